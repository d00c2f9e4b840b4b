"""Named queues as staff see them: their counts, and pausing and resuming them.

A queue exists by use: a task names it. A paused queue keeps accepting tasks; the claim
(``tasks_app.store.claim_sql``) skips it for every worker until it is resumed.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from . import audit
from .events import wake_workers
from .models import Queue, Task, TaskStatus


def set_paused(name: str, paused: bool, actor: Any = None) -> Queue:
    """Pause or resume the queue ``name`` (valid: the caller checked it) for every worker;
    ``actor`` (a user, or None for code) goes into the audit log."""
    with transaction.atomic():
        queue, _ = Queue.objects.update_or_create(
            name=name, defaults={"paused": paused, "changed_at": timezone.now()}
        )
        audit.record(actor, "queue.pause" if paused else "queue.resume", name)
        if not paused:
            transaction.on_commit(wake_workers)  # its tasks may run now
    return queue


def queue_rows(user: Any = None, every: bool = False) -> list[dict[str, Any]]:
    """``[{"name", "paused", "queued", "running"}]`` by name: every queue with queued or running
    tasks (``every``: with any task at all, a scan of the table) or paused. ``user``: a non-staff
    user sees the queues of their own queued and running tasks, with their counts."""
    staff = user is None or user.is_staff
    tasks = Task.objects.all() if staff else Task.objects.filter(owner=user)
    active = (
        tasks.filter(status__in=[TaskStatus.QUEUED, TaskStatus.RUNNING])
        .order_by()
        .values("queue", "status")
        .annotate(n=Count("id"))
    )
    counts: dict[str, dict[str, int]] = {}
    for row in active:
        counts.setdefault(row["queue"], {"queued": 0, "running": 0})[row["status"]] = row["n"]
    paused = {name for name in Queue.objects.filter(paused=True).values_list("name", flat=True)}
    names = set(counts) | paused if staff else set(counts)
    if every:
        names |= set(tasks.order_by().values_list("queue", flat=True).distinct())
    return [
        {"name": name, "paused": name in paused, **counts.get(name, {"queued": 0, "running": 0})}
        for name in sorted(names)
    ]


def queue_row(name: str) -> dict[str, Any]:
    """One queue's row, as in ``queue_rows``."""
    counts = dict(
        Task.objects.filter(queue=name, status__in=[TaskStatus.QUEUED, TaskStatus.RUNNING])
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
    )
    return {
        "name": name,
        "paused": Queue.objects.filter(name=name, paused=True).exists(),
        "queued": counts.get(TaskStatus.QUEUED, 0),
        "running": counts.get(TaskStatus.RUNNING, 0),
    }
