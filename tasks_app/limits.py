"""Limits on running work, held across every worker process and host (API.md, "Flow control").

A ``Limit`` row caps a tool (``tool:llm_chat``) or a queue (``queue:long``): at most
``concurrency`` tasks running at once, at most ``rate`` starts per period (a token bucket whose
state is in the row). The database is the shared state, inside the claim's own transaction:

- running counts are counted from the task rows, so a dead worker's slots come back when the
  reaper takes back its tasks (when its lease would expire);
- the claim reads the limit rows (locked on PostgreSQL, where claims may run side by side; on
  SQLite the write lock already makes the claim the only writer), claims within what they
  allow (``store.claim_limited_tasks``: one statement), and takes the tokens it spent; a
  rolled-back claim spends none.

A held-back task stays ``queued`` with no attempt spent. Workers hear that a slot is free from
the worker that freed it (a wake-up), and that a token is back from their own timer, so nothing
polls. With no Limit row at all, the claim is the plain one: a worker only checks, every
``CLAWSITE_LIMITS_REFRESH_SECONDS``, whether any row appeared.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection

from . import store
from .flow import parse_rate
from .models import Limit, LimitKey, Task

logger = logging.getLogger(__name__)

_TABLE = Limit._meta.db_table
_TASKS = Task._meta.db_table


@dataclass
class LimitState(LimitKey):
    """One limit as a claim sees it."""

    id: int
    key: str
    concurrency: int | None
    rate: str
    tokens: float | None
    refilled_at: float | None
    running: int = 0

    def bucket(self, now: float) -> tuple[float, float, float] | None:
        """(tokens now, capacity, tokens per second), or None without a rate."""
        if not self.rate:
            return None
        try:
            capacity, period = parse_rate(self.rate)
        except ValueError:
            return None  # a bad row (edited outside the admin's validation) limits nothing
        per_second = capacity / period
        if self.tokens is None or self.refilled_at is None:
            return float(capacity), float(capacity), per_second
        refilled = self.tokens + max(0.0, now - self.refilled_at) * per_second
        return min(float(capacity), refilled), float(capacity), per_second

    def allowance(self, now: float) -> tuple[int, float | None]:
        """How many more may start now, and (when none may because of the rate) the seconds
        until a token is back."""
        allowed = math.inf
        if self.concurrency is not None:
            allowed = self.concurrency - self.running
        bucket = self.bucket(now)
        wait = None
        if bucket is not None:
            tokens, _, per_second = bucket
            allowed = min(allowed, math.floor(tokens))
            if tokens < 1:
                wait = (1 - tokens) / per_second
        return max(0, int(min(allowed, 1 << 30))), wait


def read_limits(lock: bool = True) -> list[LimitState]:
    """Every limit with its running count (locked for the claim on PostgreSQL)."""
    suffix = " FOR UPDATE" if lock and connection.vendor != "sqlite" else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, key, concurrency, rate, tokens, refilled_at FROM {_TABLE} "
            f"ORDER BY id{suffix}"
        )
        limits = [LimitState(*row) for row in cursor.fetchall()]
        if not any(limit.concurrency is not None for limit in limits):
            return limits
        # One pass over the running tasks (a worker's worth per worker, via the claim index's
        # status prefix) counts them by tool and by queue at once.
        cursor.execute(
            f"SELECT tool, queue, COUNT(*) FROM {_TASKS} WHERE status = 'running' "
            f"GROUP BY tool, queue"
        )
        running: dict[tuple[str, str], int] = {}
        for tool, queue, count in cursor.fetchall():
            running[("tool", tool)] = running.get(("tool", tool), 0) + count
            running[("queue", queue)] = running.get(("queue", queue), 0) + count
    for limit in limits:
        limit.running = running.get((limit.kind, limit.name), 0)
    return limits


def claim_within_limits(
    worker_id: str, free: int, now: datetime, lease: timedelta, queues: Sequence[str] = ()
) -> tuple[list[Task], list[LimitState], float | None]:
    """Claim up to ``free`` tasks within every limit (the caller holds the transaction).
    Returns the tasks, the limits as read, and the seconds until a rate-held limit has a
    token again (None if none is held by its rate)."""
    limits = read_limits()
    clock = time.time()
    allowances: dict[tuple[str, str], int] = {}
    waits = []
    for limit in limits:
        allowed, wait = limit.allowance(clock)
        allowances[(limit.kind, limit.name)] = allowed
        if wait is not None:
            waits.append(wait)
    claimed = store.claim_limited_tasks(worker_id, free, now, lease, allowances, queues)
    _spend_tokens(limits, claimed, clock)
    return claimed, limits, min(waits) if waits else None


def _spend_tokens(limits: Sequence[LimitState], claimed: Sequence[Task], clock: float) -> None:
    updates = []
    for limit in limits:
        bucket = limit.bucket(clock)
        if bucket is None:
            continue
        spent = sum(1 for task in claimed if _matches(limit, task))
        if spent:
            updates.append([bucket[0] - spent, clock, limit.id])
    if updates:
        with connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {_TABLE} SET tokens = %s, refilled_at = %s WHERE id = %s", updates
            )


def _matches(limit: LimitState, task: Task) -> bool:
    column = store.LIMIT_COLUMNS.get(limit.kind)
    return column is not None and getattr(task, column, None) == limit.name


class WorkerLimits:
    """One worker's view of the limits: whether any Limit row exists (reread at most every
    ``CLAWSITE_LIMITS_REFRESH_SECONDS``, so the plain claim costs nothing extra while there is
    none), the limits as its last claim read them, and how long until a rate-held one has a
    token again."""

    def __init__(self) -> None:
        self.checked_at = -math.inf
        self.present = False
        self.limits: list[LimitState] = []
        self.token_wait: float | None = None

    def active(self) -> bool:
        if time.monotonic() - self.checked_at >= settings.CLAWSITE_LIMITS_REFRESH_SECONDS:
            self.present = Limit.objects.exists()
            self.checked_at = time.monotonic()
        if not self.present:
            self.limits, self.token_wait = [], None
        return self.present

    def claim(
        self, worker_id: str, free: int, now: datetime, lease: timedelta, queues: Sequence[str]
    ) -> list[Task]:
        claimed, self.limits, self.token_wait = claim_within_limits(
            worker_id, free, now, lease, queues
        )
        return claimed

    def frees_a_slot(self, tasks: Sequence[Task]) -> bool:
        """Whether any of these finished tasks held a slot of a concurrency limit."""
        capped = [limit for limit in self.limits if limit.concurrency is not None]
        return any(_matches(limit, task) for limit in capped for task in tasks)


def seed_limits(raw: str | None = None) -> list[str]:
    """Create the Limit rows of ``CLAWSITE_LIMITS`` that do not exist yet (staff edits win);
    returns the keys created. A bad value is logged and seeds nothing."""
    raw = settings.CLAWSITE_LIMITS if raw is None else raw
    if not raw:
        return []
    try:
        wanted = json.loads(raw)
        if not isinstance(wanted, dict):
            raise ValueError("not a JSON object")
        rows = []
        for key, spec in wanted.items():
            limit = Limit(key=key, concurrency=spec.get("concurrency"), rate=spec.get("rate") or "")
            limit.clean_fields()
            rows.append(limit)
    except (ValueError, AttributeError, TypeError, ValidationError) as error:
        logger.error("CLAWSITE_LIMITS is not valid (%s); no limit seeded", error)
        return []
    existing = set(
        Limit.objects.filter(key__in=[r.key for r in rows]).values_list("key", flat=True)
    )
    created = [row for row in rows if row.key not in existing]
    Limit.objects.bulk_create(created, ignore_conflicts=True)
    return [row.key for row in created]


def describe_limits() -> list[dict[str, Any]]:
    """The limits as the dashboard, the admin and /metrics show them."""
    clock = time.time()
    shown = []
    for limit in read_limits(lock=False):
        bucket = limit.bucket(clock)
        allowed, wait = limit.allowance(clock)
        shown.append(
            {
                "key": limit.key,
                "concurrency": limit.concurrency,
                "running": limit.running,
                "rate": limit.rate or None,
                "tokens": None if bucket is None else round(bucket[0], 2),
                "held": allowed == 0,
                "next_token_seconds": None if wait is None else round(wait, 2),
            }
        )
    return shown
