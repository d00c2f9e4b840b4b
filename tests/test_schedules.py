"""Schedules: due times, exactly-once firing decided by the database, catch-up policies, the
admin. (Across real worker processes: tests/test_schedules_e2e.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from tasks_app.models import CatchUp, Schedule, Task, TaskSource
from tasks_app.schedules import _fire, fire_due_schedules, next_due, run_key

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

ARGS = {"path": "notes.txt"}


def schedule(owner: Any, **fields: Any) -> Schedule:
    values = {"name": "s", "owner": owner, "tool": "file_info", "args": ARGS, **fields}
    return Schedule.objects.create(**values)


def test_due_times_on_the_interval_grid_and_by_cron() -> None:
    base = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    every = Schedule(interval_seconds=60)
    assert next_due(every, base) == base + timedelta(seconds=60)
    assert next_due(every, base + timedelta(seconds=150), base) == base + timedelta(seconds=180)
    assert next_due(every, base - timedelta(seconds=5), base) == base
    cron = Schedule(cron="*/15 * * * *")
    assert next_due(cron, base) == base + timedelta(minutes=15)
    assert next_due(cron, base + timedelta(minutes=1)) == base + timedelta(minutes=15)


def test_a_due_schedule_fires_one_ordinary_task_linked_to_it(alice: Any) -> None:
    due = timezone.now() - timedelta(seconds=1)
    s = schedule(alice, interval_seconds=60, next_run_at=due)
    [task_id] = fire_due_schedules()
    task = Task.objects.get(pk=task_id)
    assert (task.owner, task.tool, task.args, task.source) == (
        alice,
        "file_info",
        ARGS,
        TaskSource.SCHEDULE,
    )
    assert task.schedule_id == s.pk and task.idempotency_key == run_key(s, due)
    s.refresh_from_db()
    assert s.next_run_at == due + timedelta(seconds=60) and s.runs_fired == 1
    assert s.last_task_id == task_id
    assert fire_due_schedules() == []  # not due again yet


def test_a_worker_that_read_the_same_due_time_fires_nothing(alice: Any) -> None:
    """Two workers read the schedule due; the first fires it; the second's conditional UPDATE
    finds the due time moved and creates nothing."""
    s = schedule(alice, interval_seconds=60, next_run_at=timezone.now() - timedelta(seconds=1))
    stale = Schedule.objects.get(pk=s.pk)
    assert len(fire_due_schedules()) == 1
    assert _fire(stale, timezone.now()) is None
    assert Task.objects.count() == 1


@pytest.mark.parametrize(("policy", "runs"), [(CatchUp.ONCE, 1), (CatchUp.SKIP, 0)])
def test_catch_up_after_downtime(alice: Any, policy: str, runs: int) -> None:
    now = timezone.now()
    due = now - timedelta(seconds=600)  # ten missed due times
    s = schedule(alice, interval_seconds=60, next_run_at=due, catch_up=policy)
    fire_due_schedules(now)
    assert Task.objects.count() == runs
    s.refresh_from_db()
    assert now < s.next_run_at <= now + timedelta(seconds=60)
    assert (s.runs_fired, s.runs_skipped) == (runs, 1 - runs)


def test_a_disabled_schedule_does_not_fire(alice: Any) -> None:
    schedule(alice, interval_seconds=1, next_run_at=timezone.now(), enabled=False)
    assert fire_due_schedules(timezone.now() + timedelta(seconds=5)) == []


def test_validation_of_timing_tool_and_arguments(alice: Any) -> None:
    for bad in (
        {"interval_seconds": None, "cron": ""},
        {"interval_seconds": 5, "cron": "* * * * *"},
        {"interval_seconds": None, "cron": "not cron"},
        {"interval_seconds": 5, "tool": "nope"},
        {"interval_seconds": 5, "args": {"path": "/etc/passwd"}},
    ):
        with pytest.raises(ValidationError):
            Schedule(name="x", owner=alice, **{"tool": "file_info", "args": ARGS, **bad}).clean()
    Schedule(name="x", owner=alice, tool="file_info", args=ARGS, cron="0 * * * *").clean()


def test_staff_create_a_schedule_in_the_admin(alice: Any, carol: Any) -> None:
    from django.test import Client

    client = Client()
    client.force_login(carol)
    answer = client.post(
        "/admin/tasks_app/schedule/add/",
        {
            "name": "hourly",
            "owner": alice.pk,
            "tool": "file_info",
            "args": '{"path": "notes.txt"}',
            "queue": "default",
            "priority": "0",
            "interval_seconds": "3600",
            "cron": "",
            "catch_up": "skip",
            "enabled": "on",
        },
    )
    assert answer.status_code == 302, answer.content
    s = Schedule.objects.get(name="hourly")
    assert s.next_run_at is not None and s.next_run_at > timezone.now()
    page = client.get("/admin/tasks_app/schedule/")
    assert b"hourly" in page.content


def test_a_schedule_of_a_django_task_enqueues_it_with_no_owner(db: None) -> None:
    due = timezone.now() - timedelta(seconds=1)
    s = Schedule.objects.create(
        name="meaning",
        tool="django_task",
        args={"task": "tests.django_tasks_fixtures.calculate_meaning_of_life"},
        queue="default",
        interval_seconds=60,
        next_run_at=due,
    )
    s.clean()
    [task_id] = fire_due_schedules()
    task = Task.objects.get(pk=task_id)
    assert (task.owner_id, task.tool, task.source, task.schedule_id) == (
        None,
        "django_task",
        TaskSource.SCHEDULE,
        s.pk,
    )
    assert task.args["task"] == "tests.django_tasks_fixtures.calculate_meaning_of_life"
    bad = Schedule(name="x", tool="django_task", args={"task": "no.such.task"}, cron="* * * * *")
    with pytest.raises(ValidationError):
        bad.clean()
