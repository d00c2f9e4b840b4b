"""The peers ClawSite is compared with, each running the same trivial task: count it done.

Each app reads its Redis URL (its own db index) and key prefix from the environment; the task
INCRs a counter and stamps the first and the last completion, so the bench times the drain
the same way for every queue (first completion to last) without a result backend.
"""

from __future__ import annotations

import os
import time

import redis

PREFIX = os.environ.get("BENCH_PEER_PREFIX", "bench-peer")
URL = os.environ.get("BENCH_PEER_REDIS", "redis://127.0.0.1:6379/15")
EXPECTED = int(os.environ.get("BENCH_PEER_EXPECTED", "0"))

_client: redis.Redis | None = None


def client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(URL)
    return _client


def count_done() -> None:
    """The task body of every peer: one INCR, plus a timestamp at the first and the last."""
    done = client().incr(f"{PREFIX}:done")
    if done == 1:
        client().set(f"{PREFIX}:first", time.time())
    if done == EXPECTED:
        client().set(f"{PREFIX}:last", time.time())
