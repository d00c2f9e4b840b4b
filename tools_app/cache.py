"""The tool-result cache: answers of the read-only file tools, in Redis through django-redis.

Never stale: the key covers the tool, its version, the normalized arguments (the resolved path)
and the state of every input (tools_app.fingerprint), so a changed input is a different key; an
answer depending on something changed within ``CLAWSITE_CACHE_RACY_SECONDS`` is not stored.
The runner computes the basis on every call, which resolves and checks the path: a hit passes the
same workspace check as a run.

Statistics live in Redis too, so every process (web, workers) counts into the same numbers:
per tool a hash of counters (hits, misses, stores, bytes), a sorted set indexing the live keys
by expiry (its size is the key count; no KEYS, no SCAN for stats) and a hash of their sizes.
An entry holds the answer as JSON (never pickle); a lookup (read and count) and a store (write and account)
are each one transaction, so one round trip. Invalidation finds keys with SCAN.

Every function here is blocking (Redis round trips, stat): async code runs them with ``offload``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import caches
from redis.exceptions import RedisError

from .fingerprint import CacheBasis
from .registry import Tool, ToolArgs, all_tools
from .workspace import Workspace

logger = logging.getLogger(__name__)

ENTRY = "toolcache"
SCAN_BATCH = 500

# Keep the size index and the byte count right whoever stores, expires or deletes: each script
# runs atomically in Redis. KEYS: the tool's index (zset), sizes (hash), counters (hash).
_STORE = """
local old = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'bytes', tonumber(ARGV[2]) - old)
redis.call('HINCRBY', KEYS[3], 'stores', 1)
return 1
"""
# Count a lookup as a hit or a miss. KEYS: the counters (hash), the entry. Run in the lookup's
# transaction, after its GET; the answer itself never passes through Lua (a script's copies of
# a large value tripled a plain GET's time).
_COUNT = """
redis.call('HINCRBY', KEYS[1], redis.call('EXISTS', KEYS[2]) == 1 and 'hits' or 'misses', 1)
return 1
"""
_FORGET = """
local members
if ARGV[1] == 'expired' then
  members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, 5000)
else
  members = {}
  for i = 2, #ARGV do members[#members + 1] = ARGV[i] end
end
local freed = 0
for _, member in ipairs(members) do
  local size = redis.call('HGET', KEYS[2], member)
  if size then
    freed = freed + tonumber(size)
    redis.call('HDEL', KEYS[2], member)
  end
  redis.call('ZREM', KEYS[1], member)
end
if freed ~= 0 then redis.call('HINCRBY', KEYS[3], 'bytes', -freed) end
return #members
"""


_backend: tuple[object, Any] | None = None


def _cache() -> Any:
    """The django-redis cache, one per process and CACHES setting. Django keeps a cache per
    thread and context, and each offloaded call runs in a context of its own: built per call, the
    cache and its client cost a hit about as much as its Redis round trip. The client's
    connection pool is thread-safe."""
    global _backend
    if _backend is None or _backend[0] is not settings.CACHES:
        _backend = (settings.CACHES, caches.create_connection("default"))
    return _backend[1]


def _redis() -> Any:
    return _cache().client.get_client(write=True)


def _bookkeeping_keys(tool_name: str) -> list[str]:
    make_key = _cache().make_key
    return [
        make_key(f"{ENTRY}-index:{tool_name}"),
        make_key(f"{ENTRY}-sizes:{tool_name}"),
        make_key(f"{ENTRY}-stats:{tool_name}"),
    ]


def cacheable_tool_names() -> list[str]:
    return [tool.name for tool in all_tools() if tool.cacheable]


def ttl_for(tool_name: str) -> int:
    return int(settings.CLAWSITE_CACHE_TTL.get(tool_name, 0))


# --- lookup and store -------------------------------------------------------------------------------


@dataclass
class Lookup:
    """The cache's answer for one call: a result (hit), a key to store under (miss), or neither
    (not cacheable: the tool's cache is off, the basis is unknown, or an input is too fresh)."""

    result: dict[str, Any] | None = None
    key: str | None = None


def entry_key(tool: Tool, basis: CacheBasis) -> str:
    question = json.dumps(
        [tool.version, basis.normalized, basis.state], sort_keys=True, separators=(",", ":")
    )
    digest = hashlib.sha256(question.encode()).hexdigest()
    return f"{ENTRY}:{tool.name}:{basis.subject}:{digest}"


def lookup(tool: Tool, args: ToolArgs, workspace: Workspace) -> Lookup:
    """Blocking. Raises the tool's ToolError when the path is invalid or leads outside."""
    if not tool.answers_are_cached():
        return Lookup()
    try:
        basis = tool.cache_basis(args, workspace)
    except OSError:
        return Lookup()  # missing, unreadable, a symlink loop: the tool itself says what is wrong
    if basis is None:
        return Lookup()
    if time.time_ns() - basis.newest_ns < settings.CLAWSITE_CACHE_RACY_SECONDS * 1e9:
        # Changed too recently: a second change within the same timestamp tick would keep the
        # same stat, so this answer must not be stored, and no stored one can match it. The
        # cache is not consulted, so the call is not counted (the statistics count lookups).
        return Lookup()
    key = entry_key(tool, basis)
    try:
        entry = _cache().make_key(key)
        pipe = _redis().pipeline(transaction=True)  # one round trip: read and count
        pipe.get(entry)
        pipe.eval(_COUNT, 2, _bookkeeping_keys(tool.name)[2], entry)
        raw = pipe.execute()[0]
    except RedisError:
        # The cache is an accelerator: without Redis the tool still answers, uncached.
        logger.warning("tool cache unavailable; running %s uncached", tool.name, exc_info=True)
        return Lookup()
    if raw is not None:
        # JSON, never pickle: whoever can write to Redis must not get to run code here.
        try:
            return Lookup(result=json.loads(raw))
        except ValueError:
            logger.warning("tool cache entry of %s is not JSON; running uncached", tool.name)
    return Lookup(key=key)


def store(tool: Tool, key: str, result: dict[str, Any]) -> None:
    """Blocking: keep ``result`` under ``key`` for the tool's TTL and account for it."""
    ttl = ttl_for(tool.name)
    raw = json.dumps(result, separators=(",", ":"), ensure_ascii=False).encode()
    try:
        entry = _cache().make_key(key)
        pipe = _redis().pipeline(transaction=True)  # one round trip: write and account
        pipe.set(entry, raw, ex=ttl)
        pipe.eval(_STORE, 3, *_bookkeeping_keys(tool.name), entry, len(raw), time.time() + ttl)
        pipe.execute()
    except RedisError:
        logger.warning("tool cache unavailable; %s answer not stored", tool.name, exc_info=True)


# --- statistics and invalidation ----------------------------------------------------------------------


def _prune_expired(client: Any, tool_name: str) -> None:
    client.eval(_FORGET, 3, *_bookkeeping_keys(tool_name), "expired", time.time())


def get_cache_stats() -> dict[str, Any]:
    """The cache's statistics, the same for every process: totals and per cacheable tool.

    ``keys`` and ``bytes`` describe the live entries (expired ones are pruned first); ``hits``,
    ``misses`` and ``stores`` count since the counters were created. ``hit_ratio`` is
    hits / (hits + misses), 0.0 before any lookup.
    """
    client = _redis()
    names = cacheable_tool_names()
    for name in names:
        _prune_expired(client, name)
    pipe = client.pipeline(transaction=False)
    for name in names:
        index, _, counters_key = _bookkeeping_keys(name)
        pipe.hgetall(counters_key)
        pipe.zcard(index)
    replies = pipe.execute()
    by_tool: dict[str, dict[str, int]] = {}
    for position, name in enumerate(names):
        counters = {k.decode(): int(v) for k, v in replies[2 * position].items()}
        by_tool[name] = {
            "hits": counters.get("hits", 0),
            "misses": counters.get("misses", 0),
            "keys": int(replies[2 * position + 1]),
            "stores": counters.get("stores", 0),
            "bytes": max(0, counters.get("bytes", 0)),
        }
    totals = {
        field: sum(stats[field] for stats in by_tool.values())
        for field in ("hits", "misses", "keys", "stores", "bytes")
    }
    lookups = totals["hits"] + totals["misses"]
    return {
        "hits": totals["hits"],
        "misses": totals["misses"],
        "hit_ratio": round(totals["hits"] / lookups, 4) if lookups else 0.0,
        "keys": totals["keys"],
        "stores": totals["stores"],
        "bytes": totals["bytes"],
        "by_tool": by_tool,
    }


def _glob_escape(text: str) -> str:
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


def invalidate(tool: str | None = None, pattern: str | None = None) -> int:
    """Delete cached answers, of one tool or all; ``pattern`` is a Redis glob matched against
    "<username>/<path>" (e.g. ``alice/notes/*``). Returns how many entries were deleted."""
    client = _redis()
    names = [tool] if tool is not None else cacheable_tool_names()
    deleted = 0
    for name in names:
        match = _glob_escape(_cache().make_key(f"{ENTRY}:{name}:")) + (pattern or "*") + ":*"
        batch: list[bytes] = []
        for key in client.scan_iter(match=match, count=SCAN_BATCH):
            batch.append(key)
            if len(batch) >= SCAN_BATCH:
                deleted += _delete(client, name, batch)
                batch = []
        if batch:
            deleted += _delete(client, name, batch)
    return deleted


def _delete(client: Any, tool_name: str, keys: list[bytes]) -> int:
    removed = int(client.delete(*keys))
    client.eval(_FORGET, 3, *_bookkeeping_keys(tool_name), "members", *keys)
    return removed


def reset_stats() -> None:
    """Zero the counters (hits, misses, stores) of every tool; entries and sizes stay."""
    client = _redis()
    for name in cacheable_tool_names():
        counters = _bookkeeping_keys(name)[2]
        client.hdel(counters, "hits", "misses", "stores")
