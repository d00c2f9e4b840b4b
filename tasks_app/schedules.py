"""Schedules: recurring tasks fired exactly once per due time by whichever worker sees them first.

No single "beat" process: every worker looks for due schedules about once a second, and the
database decides who fires. A firing is claimed by a conditional UPDATE that moves
``next_run_at`` from the due time read to the following one; only one transaction can match
that old value (SQLite: one writer at a time; PostgreSQL: the row lock makes a second UPDATE
wait, then find the value changed). The same transaction inserts the run, so a firing and its
task commit together or not at all.

Catch-up after downtime (workers stopped, a schedule disabled for a while):
- ``once`` (default): one run for any number of missed due times, then the next future time;
- ``skip``: a run later than ``CLAWSITE_SCHEDULE_GRACE_SECONDS`` past its due time is skipped
  (counted in ``runs_skipped``); the next future time is kept.
A schedule of the tool ``django_task`` (args ``{"task": "<module path>", "args", "kwargs"}``)
enqueues that ``@task`` (no owner needed). Interval schedules stay on their grid (due + k * interval); cron expressions are read in UTC by
cronsim.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from cronsim import CronSim, CronSimError
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .db import write_lock
from .django_tasks import DJANGO_TASK_TOOL, load_task
from .errors import ApiError
from .models import CatchUp, Schedule, Task, TaskSource

logger = logging.getLogger(__name__)


def next_due(schedule: Schedule, after: datetime, due: datetime | None = None) -> datetime:
    """The first due time strictly after ``after``: on the interval's grid from ``due`` (or
    ``after``), or the cron expression's next time."""
    if schedule.interval_seconds:
        step = timedelta(seconds=schedule.interval_seconds)
        if due is None:
            return after + step
        if due > after:
            return due
        return due + ((after - due) // step + 1) * step
    return next(CronSim(schedule.cron, after.astimezone(UTC)))


def check_schedule(schedule: Schedule) -> None:
    """The admin's validation: one timing, a known tool, arguments its schema accepts."""
    from .services import validate_submission

    if bool(schedule.interval_seconds) == bool(schedule.cron):
        raise ValidationError("Give either an interval in seconds or a cron expression.")
    if schedule.cron:
        try:
            CronSim(schedule.cron, timezone.now())
        except CronSimError as error:
            raise ValidationError({"cron": f"Not a cron expression: {error}"}) from None
    if schedule.tool == DJANGO_TASK_TOOL:
        _django_task(schedule)
        return
    try:
        validate_submission(_raw(schedule), schedule.owner)
    except ApiError as error:
        raise ValidationError(f"{error.message} {error.details or ''}".strip()) from None


def _django_task(schedule: Schedule) -> tuple[Any, list[Any], dict[str, Any]]:
    """A Django task schedule's ``@task``, args and kwargs (args ``{"task", "args", "kwargs"}``)."""
    spec = schedule.args if isinstance(schedule.args, dict) else {}
    args, kwargs = spec.get("args", []), spec.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValidationError('A Django task\'s args are {"task", "args": [...], "kwargs": {...}}.')
    try:
        task = load_task(str(spec.get("task", "")))
    except ValueError as error:
        raise ValidationError(str(error)) from None
    return task.using(queue_name=schedule.queue, priority=schedule.priority), args, kwargs


def _raw(schedule: Schedule, due: datetime | None = None) -> dict[str, Any]:
    raw = {
        "tool": schedule.tool,
        "args": schedule.args,
        "queue": schedule.queue,
        "priority": schedule.priority,
    }
    if due is not None and schedule.owner_id is not None:
        # The due time in the owner's idempotency key: the unique constraint backs "once per
        # due time" up, and each run says which due time it is.
        raw["idempotency_key"] = run_key(schedule, due)
    return raw


def run_key(schedule: Schedule, due: datetime) -> str:
    return f"schedule-{schedule.pk}-{due.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%fZ}"


def start_schedule(schedule: Schedule, now: datetime | None = None) -> None:
    """Set the first due time of a new or retimed schedule (not saved)."""
    schedule.next_run_at = next_due(schedule, now or timezone.now())


def fire_due_schedules(now: datetime | None = None, limit: int = 50) -> list[str]:
    """Fire every enabled schedule due by ``now`` (each in its own short transaction); returns
    the ids of the tasks created. Safe to run in every worker at once."""
    now = now or timezone.now()
    due = Schedule.objects.filter(enabled=True, next_run_at__lte=now).order_by("next_run_at")
    created = []
    for schedule in due.select_related("owner")[:limit]:
        task_id = _fire(schedule, now)
        if task_id:
            created.append(task_id)
    return created


def _fire(schedule: Schedule, now: datetime) -> str | None:
    from .services import submit_tasks, validate_submission

    due = schedule.next_run_at
    assert due is not None  # noqa: S101 (for the type checker: a due schedule has a time)
    following = next_due(schedule, now, due)
    late = (now - due).total_seconds()
    skip = schedule.catch_up == CatchUp.SKIP and late > settings.CLAWSITE_SCHEDULE_GRACE_SECONDS
    with write_lock(), transaction.atomic():
        won = Schedule.objects.filter(pk=schedule.pk, enabled=True, next_run_at=due).update(
            next_run_at=following,
            last_run_at=now,
            **({"runs_skipped": F("runs_skipped") + 1} if skip else {}),
        )
        if not won or skip:
            return None  # another worker fired it (or it was retimed) / a missed time skipped
        try:
            if schedule.tool == DJANGO_TASK_TOOL:
                django_task, args, kwargs = _django_task(schedule)
                task_id = django_task.enqueue(*args, **kwargs).id  # in this transaction
            else:
                validated = validate_submission(_raw(schedule, due), schedule.owner)
                [(task, _)] = submit_tasks(schedule.owner, [validated], TaskSource.SCHEDULE)
                task_id = task.id
        except (ApiError, ValidationError) as error:  # disabled since, the queue is full, ...
            logger.warning("schedule %s: run at %s not created: %s", schedule, due, error)
            Schedule.objects.filter(pk=schedule.pk).update(runs_skipped=F("runs_skipped") + 1)
            return None
        Task.objects.filter(pk=task_id).update(schedule=schedule, source=TaskSource.SCHEDULE)
        Schedule.objects.filter(pk=schedule.pk).update(
            last_task_id=task_id, runs_fired=F("runs_fired") + 1
        )
    return task_id


def describe_schedules() -> list[dict[str, Any]]:
    """The schedules as the dashboard shows them."""
    return [
        {
            "name": s.name,
            "tool": s.tool,
            "every": f"{s.interval_seconds} s" if s.interval_seconds else s.cron,
            "enabled": s.enabled,
            "next_run_at": s.next_run_at,
            "last_run_at": s.last_run_at,
            "runs_fired": s.runs_fired,
            "runs_skipped": s.runs_skipped,
        }
        for s in Schedule.objects.all()[:100]
    ]
