"""Backpressure at the door (API.md, "Flow control"): a caller's request rate and the queue's room.

- ``CLAWSITE_API_RATE`` (e.g. ``600/m``): a token bucket per user in Redis, so every daphne
  process on every host draws from the same bucket. One Lua call takes a *handful* of tokens
  at once (sized to this process's pace for the user, at most a twentieth of the bucket and
  ``HANDFUL_MAX``) and the process spends them locally, so a busy caller costs a Redis round
  trip only once per handful: the cluster never admits more than the bucket gives; a process
  may sit on a few tokens (for at most ``LOCAL_TOKEN_SECONDS``) that another could have used.
- ``CLAWSITE_MAX_QUEUED_PER_USER`` / ``CLAWSITE_MAX_QUEUED``: checked inside the submit's
  transaction. Far from the limit, an estimate does (a grouped count at most
  ``COUNT_MAX_AGE`` old plus what this process added since); near it, an exact indexed count
  decides, so a refusal is always right and a submit never costs a COUNT(*) while there is room.

Both refusals are ``ApiError``s with ``retry_after`` (the ``Retry-After`` header); the REST API
answers them as 429s, MCP as JSON-RPC errors.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
import weakref
from typing import Any

import redis.asyncio
from django.conf import settings
from django.db import connection

from .errors import ApiError
from .models import Task, TaskStatus

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smh])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}

LOCAL_TOKEN_SECONDS = 1.0
HANDFUL_MAX = 1000
COUNT_MAX_AGE = 1.0
QUEUE_FULL_RETRY_AFTER = 2


def parse_rate(text: str) -> tuple[int, float]:
    """``"40/m"`` -> (40, 60.0): N starts (or requests) per period. ``N/s``, ``N/m``, ``N/h``,
    and a multiple of the unit (``5/10s``, for scaled-down periods in tests)."""
    match = _RATE.match(text or "")
    if match is None or int(match.group(1)) <= 0:
        raise ValueError(f"A rate is N/s, N/m or N/h with N > 0, not {text!r}.")
    count, multiple, unit = match.groups()
    return int(count), (int(multiple) if multiple else 1) * _UNIT_SECONDS[unit]


# --- request rate ---------------------------------------------------------------------------------

# KEYS[1]: the bucket. ARGV: capacity, tokens per second, tokens wanted. Redis's clock, so hosts
# with skewed clocks share one bucket. Answers {tokens granted, seconds until one is back}.
_TAKE_TOKENS = """
local cap, rate, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(b[1]), tonumber(b[2])
if tokens == nil then tokens, at = cap, now end
tokens = math.min(cap, tokens + math.max(0, now - at) * rate)
local got = math.min(want, math.floor(tokens))
tokens = tokens - got
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(cap / rate * 1000) + 1000)
local wait = 0
if got == 0 then wait = (1 - tokens) / rate end
return {got, tostring(wait)}
"""


class _ApiRate:
    """The per-user request limiter of one process (one Redis client per event loop)."""

    def __init__(self) -> None:
        # user id -> (tokens left, good until, tokens granted in that handful)
        self.local: dict[int, tuple[int, float, int]] = {}
        self.clients: weakref.WeakKeyDictionary[Any, tuple[str, Any]] = weakref.WeakKeyDictionary()

    def _script(self, loop: Any) -> Any:
        held = self.clients.get(loop)
        if held is None or held[0] != settings.REDIS_URL:
            client = redis.asyncio.Redis.from_url(
                settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=2
            )
            held = self.clients[loop] = (settings.REDIS_URL, client.register_script(_TAKE_TOKENS))
        return held[1]

    async def check(self, user: Any) -> None:
        """Spend one of ``user``'s tokens, or raise ``rate_limited`` with ``retry_after``."""
        text = settings.CLAWSITE_API_RATE
        if not text:
            return
        now = time.monotonic()
        tokens, until, granted = self.local.get(user.pk, (0, 0.0, 0))
        if tokens > 0 and now < until:
            self.local[user.pk] = (tokens - 1, until, granted)
            return
        capacity, period = parse_rate(text)
        script = self._script(asyncio.get_running_loop())
        # The handful follows this process's pace for the user: doubled when the last one ran
        # out in time, else what was used of it; so a slow caller takes one token at a time
        # and tokens left to expire are few.
        handful = granted * 2 if tokens == 0 and now < until else granted - tokens
        handful = max(1, min(HANDFUL_MAX, capacity // 20, handful))
        if len(self.local) > 10_000:
            self.local.clear()  # forget idle users' stale handfuls now and then
        got, wait = await script(
            keys=[f"{settings.REDIS_PREFIX}:rate:api:{user.pk}"],
            args=[capacity, capacity / period, handful],
        )
        got = int(got)
        if got == 0:
            retry_after = max(1, math.ceil(float(wait)))
            raise ApiError(
                "rate_limited",
                f"Too many requests: the limit is {text} per user.",
                {"limit": text, "retry_after": retry_after},
                retry_after=retry_after,
            )
        self.local[user.pk] = (got - 1, now + LOCAL_TOKEN_SECONDS, got)


api_rate = _ApiRate()


async def acheck_api_rate(user: Any) -> None:
    """The request-rate check of one API (or MCP) request of ``user``."""
    await api_rate.check(user)


# --- queue room -----------------------------------------------------------------------------------

_QUEUED = TaskStatus.QUEUED.value
_TABLE = Task._meta.db_table


class _QueuedCounts:
    """This process's idea of how many tasks are queued, per owner and in all."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.read_at = -math.inf
        self.by_owner: dict[int | None, int] = {}
        self.total = 0

    def _refresh(self, cursor: Any) -> None:
        cursor.execute(
            f"SELECT owner_id, COUNT(*) FROM {_TABLE} WHERE status = %s GROUP BY owner_id",
            [_QUEUED],
        )
        self.by_owner = dict(cursor.fetchall())
        self.total = sum(self.by_owner.values())
        self.read_at = time.monotonic()

    def make_room(self, owner_id: int | None, n: int) -> ApiError | None:
        """``queue_full`` if ``n`` more tasks of ``owner_id`` would pass a limit; else None, and
        they count as added. Runs inside the submit's transaction (exact counts see its view).
        Tasks enqueued by code (no owner) count in all, under no user's limit."""
        per_user, overall = settings.CLAWSITE_MAX_QUEUED_PER_USER, settings.CLAWSITE_MAX_QUEUED
        if owner_id is None:
            per_user = 0
        if not per_user and not overall:
            return None
        with self.lock, connection.cursor() as cursor:
            if time.monotonic() - self.read_at > COUNT_MAX_AGE:
                self._refresh(cursor)
            mine = self.by_owner.get(owner_id, 0)
            # Near a limit (within a fifth of it), the exact count decides.
            if per_user and mine + n > per_user * 0.8:
                cursor.execute(
                    f"SELECT COUNT(*) FROM {_TABLE} WHERE owner_id = %s AND status = %s",
                    [owner_id, _QUEUED],
                )
                mine = cursor.fetchone()[0]
            if overall and self.total + n > overall * 0.8:
                cursor.execute(f"SELECT COUNT(*) FROM {_TABLE} WHERE status = %s", [_QUEUED])
                self.total = cursor.fetchone()[0]
            if per_user and mine + n > per_user:
                return _queue_full(
                    f"You have {mine} tasks queued; the limit is {per_user} per user.", per_user
                )
            if overall and self.total + n > overall:
                return _queue_full(
                    f"{self.total} tasks are queued; the limit is {overall}.", overall
                )
            self.by_owner[owner_id] = mine + n
            self.total += n
        return None

    def forget(self) -> None:
        """Read the counts again at the next submit (tests; a rolled-back transaction)."""
        self.read_at = -math.inf


def _queue_full(message: str, limit: int) -> ApiError:
    return ApiError(
        "queue_full",
        f"{message} Nothing was created.",
        {"limit": limit, "retry_after": QUEUE_FULL_RETRY_AFTER},
        retry_after=QUEUE_FULL_RETRY_AFTER,
    )


queued_counts = _QueuedCounts()
