"""The LLM endpoint pool of ``llm_chat`` (``CLAWSITE_LLM_ENDPOINTS``; ``CLAWSITE_LLM_BASE_URL``
alone is a pool of one).

Each call goes to an endpoint drawn by weight among those whose breaker lets a call through and
whose concurrency and rate (held across all workers in Redis: tools_app.breaker) have room. A
429, a 5xx or a connection failure counts against that endpoint's breaker, honouring its
``Retry-After``, and the call moves on to the next endpoint; when every endpoint has failed
once, the attempt fails as retryable (the task's own backoff takes over). When none has room,
the call waits (without polling faster than the soonest reopening) and the wait is recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from django.conf import settings

from . import breaker
from .errors import ToolError

T = TypeVar("T")
# How long to wait for room before trying again, when no endpoint said how long.
ROOM_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Endpoint:
    name: str
    base_url: str
    api_key: str = ""
    model: str = ""
    weight: float = 1.0
    concurrency: int | None = None
    rate: str | None = None

    @property
    def breaker_name(self) -> str:
        # The URL's digest too: an endpoint moved to a new URL starts with a fresh breaker.
        digest = hashlib.sha256(self.base_url.encode()).hexdigest()[:8]
        return f"llm:{self.name}@{digest}"


class EndpointFailure(Exception):
    """A failure of the endpoint, not of the request: try another one."""

    def __init__(self, error: ToolError, retry_after: float = 0.0) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


def endpoints() -> list[Endpoint]:
    """The configured pool (ValueError when ``CLAWSITE_LLM_ENDPOINTS`` is malformed)."""
    raw = settings.CLAWSITE_LLM_ENDPOINTS
    if not raw:
        if not settings.CLAWSITE_LLM_BASE_URL:
            return []
        return [
            Endpoint(
                name="default",
                base_url=settings.CLAWSITE_LLM_BASE_URL,
                api_key=settings.CLAWSITE_LLM_API_KEY,
                model=settings.CLAWSITE_LLM_MODEL,
            )
        ]
    items = json.loads(raw)
    if not isinstance(items, list) or not items:
        raise ValueError("CLAWSITE_LLM_ENDPOINTS must be a non-empty JSON list")
    pool = []
    for item in items:
        if not isinstance(item, dict) or not item.get("name") or not item.get("base_url"):
            raise ValueError("each LLM endpoint needs a name and a base_url")
        pool.append(
            Endpoint(
                name=str(item["name"]),
                base_url=str(item["base_url"]),
                api_key=str(item.get("api_key") or ""),
                model=str(item.get("model") or settings.CLAWSITE_LLM_MODEL),
                weight=float(item.get("weight", 1.0)),
                concurrency=item.get("concurrency"),
                rate=item.get("rate"),
            )
        )
    return pool


def weighted_order(pool: list[Endpoint]) -> list[Endpoint]:
    """The endpoints in a random order where heavier ones tend to come first (each drawn
    with probability proportional to its weight among those left)."""
    # Load spreading, not a secret: the standard generator is right here.
    draw = random.random
    return sorted(pool, key=lambda e: draw() ** (1.0 / max(e.weight, 1e-9)), reverse=True)


def retry_after_seconds(value: str | None) -> float:
    """A ``Retry-After`` header (seconds or an HTTP date) as seconds; 0 when absent or bad."""
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return 0.0


async def call(attempt: Callable[[Endpoint], Awaitable[T]], deadline: float) -> tuple[T, Endpoint]:
    """``attempt(endpoint)`` on the pool, failing over; ``deadline`` in ``time.monotonic()``."""
    pool = endpoints()
    if not pool:
        raise ToolError("tool_disabled", "no LLM endpoint is configured")
    failed: dict[str, EndpointFailure] = {}
    waited_from: float | None = None
    while True:
        soonest = None
        for endpoint in weighted_order([e for e in pool if e.name not in failed]):
            holder = await breaker.take_slot(
                endpoint.breaker_name,
                endpoint.concurrency,
                endpoint.rate,
                lease=max(1.0, deadline - time.monotonic()) + 30,
            )
            if holder is None:
                soonest = min(soonest or ROOM_POLL_SECONDS, ROOM_POLL_SECONDS)
                continue
            try:
                allowed, wait = await breaker.allow(endpoint.breaker_name)
                if not allowed:
                    soonest = wait if soonest is None else min(soonest, wait)
                    continue
                if waited_from is not None:
                    await breaker.record_wait(endpoint.breaker_name, time.monotonic() - waited_from)
                    waited_from = None
                try:
                    result = await attempt(endpoint)
                except EndpointFailure as failure:
                    await breaker.record(endpoint.breaker_name, False, failure.retry_after)
                    failed[endpoint.name] = failure
                    continue
                await breaker.record(endpoint.breaker_name, True)
                return result, endpoint
            finally:
                await breaker.give_back(endpoint.breaker_name, holder)
        if len(failed) == len(pool):
            last = list(failed.values())[-1]
            raise ToolError(
                last.error.type,
                "every LLM endpoint failed: "
                + "; ".join(f"{name}: {f.error.message}" for name, f in failed.items()),
                retryable=True,
            )
        left = deadline - time.monotonic()
        if left <= 0:
            raise ToolError(
                "endpoints_busy",
                "no LLM endpoint had room (limits or open breakers) before the timeout",
                retryable=True,
            )
        if waited_from is None:
            waited_from = time.monotonic()
        await asyncio.sleep(min(soonest if soonest is not None else ROOM_POLL_SECONDS, left))


def describe_endpoints() -> list[dict[str, Any]]:
    """The pool without secrets (the dashboard)."""
    try:
        pool = endpoints()
    except ValueError:
        return []
    return [
        {"name": e.name, "weight": e.weight, "concurrency": e.concurrency, "rate": e.rate}
        for e in pool
    ]
