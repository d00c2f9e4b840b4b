"""What several sections share: the bench user and token, a backlog of no-op tasks, counting."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

NOOP_TOOL = "bench_noop"


def bench_user(username: str = "bench") -> tuple[Any, str]:
    """The bench's user and a fresh Bearer token for it."""
    from django.contrib.auth import get_user_model

    from tasks_app.models import ApiToken

    user, _ = get_user_model().objects.get_or_create(username=username)
    return user, ApiToken.issue(user, name="bench")[1]


def insert_backlog(owner: Any, count: int, chunk: int = 5000, queue: str = "default") -> None:
    """``count`` queued no-op tasks, written straight through the store (no events, no wake-up):
    the backlog a worker started afterwards drains."""
    from tasks_app import store
    from tasks_app.models import Task

    done = 0
    while done < count:
        size = min(chunk, count - done)
        now = timezone.now()
        tasks = [
            Task(
                owner=owner,
                tool=NOOP_TOOL,
                args={"n": done + i},
                timeout=30.0,
                created_at=now,
                queue=queue,
            )
            for i in range(size)
        ]
        with transaction.atomic():
            store.insert_tasks(tasks)
        done += size


def status_counts() -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT status, COUNT(*) FROM tasks_app_task GROUP BY status")
        return dict(cursor.fetchall())


def run_window() -> tuple[float, float, int, int]:
    """(first started_at, last finished_at) as epoch seconds, tasks run more than once, and
    tasks not succeeded, over the whole table."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT MIN(started_at), MAX(finished_at), SUM(attempts > 1), SUM(status != 'succeeded') "
            "FROM tasks_app_task"
        )
        first, last, repeated, unfinished = cursor.fetchone()

    def epoch(value: Any) -> float:
        if isinstance(value, str):  # SQLite keeps datetimes as UTC text
            value = datetime.fromisoformat(value)
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()

    return epoch(first), epoch(last), int(repeated or 0), int(unfinished or 0)


def clear_tasks() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM tasks_app_task")
