"""Circuit breakers and per-endpoint limits for outbound calls, shared by every worker (Redis).

A breaker per name (an LLM endpoint ``llm:<name>``, an http_fetch host ``host:<host>``):
- closed: calls go through; ``CLAWSITE_BREAKER_FAILURES`` consecutive failures open it;
- open: calls are refused for ``CLAWSITE_BREAKER_COOLDOWN_SECONDS`` (or longer, when the server
  said ``Retry-After``);
- half-open: after the cool-down, exactly one call (the probe) goes through, across all workers
  (an atomic claim in Lua); its success closes the breaker, its failure opens it again.

Per-endpoint ``concurrency`` is a Redis sorted set of holders whose scores are expiry times, so a
dead worker's slot frees itself; ``rate`` is the API's token bucket script (tasks_app.flow).
Every state change and every wait is one Lua call; Redis's clock is the only clock.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import weakref
from typing import Any

import redis.asyncio
from django.conf import settings

logger = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

# KEYS[1] breaker hash. ARGV: cool-down seconds. Answers {allowed 0/1, state, seconds to wait}.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local b = redis.call('HMGET', KEYS[1], 'state', 'until', 'probe_until')
local state = b[1] or 'closed'
if state == 'closed' then return {1, state, '0'} end
local reopen = tonumber(b[2]) or 0
if now < reopen then return {0, state, tostring(reopen - now)} end
local probe_until = tonumber(b[3]) or 0
if now < probe_until then return {0, 'half_open', tostring(probe_until - now)} end
redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_until', tostring(now + tonumber(ARGV[1])))
redis.call('HINCRBY', KEYS[1], 'probes', 1)
return {1, 'half_open', '0'}
"""

# KEYS[1] breaker hash. ARGV: ok (1/0), threshold, cool-down seconds, retry-after seconds.
_RECORD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
if ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0, 'until', 0, 'probe_until', 0)
  return 'closed'
end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('HINCRBY', KEYS[1], 'failures_total', 1)
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local wait = math.max(tonumber(ARGV[3]), tonumber(ARGV[4]))
if state == 'half_open' or failures >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', tostring(now + wait), 'probe_until', 0)
  redis.call('HINCRBY', KEYS[1], 'opened', 1)
  return 'open'
end
if tonumber(ARGV[4]) > 0 then
  -- Retry-After on a closed breaker: this endpoint rests that long, the others carry on.
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', tostring(now + tonumber(ARGV[4])))
  return 'open'
end
return state
"""

# KEYS[1] holders zset. ARGV: limit, holder id, lease seconds. Answers 1 when a slot was taken.
_TAKE_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3]) * 1000) + 1000)
return 1
"""


class _Scripts:
    """The scripts on one Redis client per event loop."""

    def __init__(self) -> None:
        self.by_loop: weakref.WeakKeyDictionary[Any, tuple[str, Any, dict[str, Any]]] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> tuple[Any, dict[str, Any]]:
        loop = asyncio.get_running_loop()
        held = self.by_loop.get(loop)
        if held is None or held[0] != settings.REDIS_URL:
            from tasks_app.flow import _TAKE_TOKENS

            client = redis.asyncio.Redis.from_url(
                settings.REDIS_URL,
                socket_connect_timeout=1,
                socket_timeout=2,
                decode_responses=True,
            )
            scripts = {
                name: client.register_script(body)
                for name, body in (
                    ("acquire", _ACQUIRE),
                    ("record", _RECORD),
                    ("slot", _TAKE_SLOT),
                    ("tokens", _TAKE_TOKENS),
                )
            }
            held = self.by_loop[loop] = (settings.REDIS_URL, client, scripts)
        return held[1], held[2]


_scripts = _Scripts()


def _key(kind: str, name: str) -> str:
    return f"{settings.REDIS_PREFIX}:breaker:{kind}:{name}"


async def allow(name: str) -> tuple[bool, float]:
    """May a call to ``name`` go out now? (False, seconds to wait) while its breaker is open or
    another worker's probe is out."""
    _, scripts = _scripts.get()
    allowed, _state, wait = await scripts["acquire"](
        keys=[_key("state", name)], args=[settings.CLAWSITE_BREAKER_COOLDOWN_SECONDS]
    )
    return bool(int(allowed)), float(wait)


async def record(name: str, ok: bool, retry_after: float = 0.0) -> str:
    """The outcome of a call to ``name``; returns the breaker's state after it."""
    _, scripts = _scripts.get()
    state = await scripts["record"](
        keys=[_key("state", name)],
        args=[
            1 if ok else 0,
            settings.CLAWSITE_BREAKER_FAILURES,
            settings.CLAWSITE_BREAKER_COOLDOWN_SECONDS,
            retry_after,
        ],
    )
    if state == OPEN and not ok:
        logger.warning("circuit breaker %s open", name)
    return str(state)


async def take_slot(
    name: str, concurrency: int | None, rate: str | None, lease: float
) -> str | None:
    """A slot of ``name``'s concurrency and a token of its rate: the holder id to give back,
    or None when either is used up now (the caller tries another endpoint or waits)."""
    _, scripts = _scripts.get()
    holder = secrets.token_hex(8)
    if rate:
        from tasks_app.flow import parse_rate

        capacity, period = parse_rate(rate)
        got, _ = await scripts["tokens"](
            keys=[_key("rate", name)], args=[capacity, capacity / period, 1]
        )
        if not int(got):
            return None
    if concurrency:
        taken = await scripts["slot"](keys=[_key("slots", name)], args=[concurrency, holder, lease])
        if not int(taken):
            return None
    return holder


async def give_back(name: str, holder: str) -> None:
    client, _ = _scripts.get()
    await client.zrem(_key("slots", name), holder)


async def record_wait(name: str, seconds: float) -> None:
    """Time a call spent waiting for an endpoint's limit (shown on the dashboard, /metrics)."""
    client, _ = _scripts.get()
    key = _key("waits", name)
    pipe = client.pipeline(transaction=False)
    pipe.hincrby(key, "count", 1)
    pipe.hincrbyfloat(key, "seconds", seconds)
    await pipe.execute()


def describe_breakers() -> list[dict[str, Any]]:
    """Every breaker's state and every endpoint's limiter waits (sync: pages, admin, /metrics)."""
    import redis as sync_redis

    client = sync_redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=2, decode_responses=True
    )
    now = time.time()
    shown: dict[str, dict[str, Any]] = {}
    try:
        for kind in ("state", "waits"):
            prefix = _key(kind, "")
            for key in client.scan_iter(match=f"{prefix}*", count=500):
                name = key[len(prefix) :]
                values = client.hgetall(key)
                entry = shown.setdefault(name, {"name": name, "state": CLOSED})
                if kind == "state":
                    state = values.get("state", CLOSED)
                    if state == OPEN and float(values.get("until") or 0) <= now:
                        state = HALF_OPEN  # the next call is the probe
                    entry.update(
                        state=state,
                        failures=int(values.get("failures") or 0),
                        opened=int(values.get("opened") or 0),
                    )
                else:
                    entry.update(
                        waits=int(values.get("count") or 0),
                        wait_seconds=round(float(values.get("seconds") or 0), 3),
                    )
    except sync_redis.RedisError:
        logger.warning("breakers: Redis unavailable", exc_info=True)
    finally:
        client.close()
    return sorted(shown.values(), key=lambda entry: entry["name"])
