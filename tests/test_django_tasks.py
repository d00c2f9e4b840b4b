"""The django.tasks backend in this process: settings, validation, enqueue, results.

What needs a worker runs against real worker processes in tests/test_django_tasks_e2e.py.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.tasks import TaskResultStatus, default_task_backend, task, task_backends
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tasks_app.backends import ClawSiteBackend
from tasks_app.models import Task, TaskSource, TaskStatus
from tests import django_tasks_fixtures as fx

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def test_clawsite_is_the_default_backend_with_every_feature() -> None:
    backend = task_backends["default"]
    assert isinstance(backend, ClawSiteBackend)
    assert backend.supports_defer and backend.supports_async_task
    assert backend.supports_get_result and backend.supports_priority
    assert fx.noop_task.max_attempts == 1 and fx.noop_task.timeout is None  # type: ignore[attr-defined]
    assert fx.fails_until_third_attempt.max_attempts == 3
    assert fx.sleeps_past_its_timeout.timeout == 1


def test_the_backend_and_task_definitions_touch_no_database() -> None:
    """A Task validates itself when its module is imported, maybe while apps still load."""
    with CaptureQueriesContext(connection) as queries:
        backend = ClawSiteBackend("other", {})
        backend.validate_task(fx.noop_task)
        task(fx.echo.func)  # a new Task, validated against the default backend
    assert len(queries) == 0


def test_enqueue_writes_one_queued_django_task_without_owner() -> None:
    run_after = timezone.now() + timedelta(hours=1)
    result = fx.echo.using(priority=7, queue_name="mail", run_after=run_after).enqueue(
        1, (2, 3), name="x", mapping={4: "four"}
    )
    row = Task.objects.get(pk=result.id)
    assert row.tool == "django_task" and row.source == TaskSource.DJANGO and row.owner is None
    assert row.args == {
        "task": "tests.django_tasks_fixtures.echo",
        "args": [1, [2, 3]],
        "kwargs": {"name": "x", "mapping": {"4": "four"}},
    }
    assert (row.queue, row.priority, row.run_after) == ("mail", 7, run_after)
    assert (row.max_attempts, row.status) == (1, TaskStatus.QUEUED)
    assert result.status == TaskResultStatus.READY and result.enqueued_at == row.created_at
    # What the function will receive: the JSON round trip, not the Python values given.
    assert result.args == [1, [2, 3]] and result.kwargs["mapping"] == {"4": "four"}
    assert result.worker_ids == [] and result.errors == []
    assert fx.fails_until_third_attempt.enqueue().id
    assert Task.objects.get(tool="django_task", max_attempts=3).timeout > 0


def test_task_options_set_attempts_and_timeout() -> None:
    result = fx.sleeps_past_its_timeout.enqueue("/nowhere")
    row = Task.objects.get(pk=result.id)
    assert (row.max_attempts, row.timeout) == (1, 1.0)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ([object()], TypeError),
        ([{1, 2}], TypeError),
        ([math.nan], ValueError),
        ([datetime(2026, 1, 1)], TypeError),  # noqa: DTZ001 (naive on purpose)
    ],
)
def test_arguments_without_a_json_round_trip_are_refused_at_enqueue(
    args: list[Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        fx.echo.enqueue(*args)
    with pytest.raises(error):
        fx.echo.enqueue(value=args[0])
    assert Task.objects.count() == 0


def test_django_validation_errors() -> None:
    with pytest.raises(InvalidTask):
        fx.noop_task.using(priority=101)
    with pytest.raises(InvalidTask):
        fx.noop_task.using(run_after=datetime(2030, 1, 1))  # noqa: DTZ001 (naive on purpose)
    with pytest.raises(InvalidTask):
        fx.noop_task.using(queue_name="not a slug")

    def inner() -> None:
        pass

    with pytest.raises(InvalidTask):
        task(inner)
    for options in ({"max_attempts": 0}, {"max_attempts": 101}, {"timeout": 0}, {"timeout": "1"}):
        with pytest.raises(InvalidTask):
            task(**options)(fx.echo.func)
    assert Task.objects.count() == 0


def test_clawsite_queues_limit_the_backends_queues(settings: Any) -> None:
    settings.TASKS = {
        "default": {
            "BACKEND": "tasks_app.backends.ClawSiteBackend",
            "QUEUES": ["default", "mail"],
        }
    }
    assert fx.noop_task.using(queue_name="mail").enqueue().id
    with pytest.raises(InvalidTask):
        fx.noop_task.using(queue_name="other")


def test_enqueue_in_a_transaction_commits_with_it() -> None:
    sent: list[str] = []

    def on_enqueued(sender: Any, task_result: Any, **kwargs: Any) -> None:
        sent.append(task_result.id)

    task_enqueued.connect(on_enqueued)
    try:
        with pytest.raises(RuntimeError), transaction.atomic():
            rolled_back = fx.noop_task.enqueue()
            assert Task.objects.filter(pk=rolled_back.id).exists()  # in the transaction
            raise RuntimeError("roll back")
        assert not Task.objects.filter(pk=rolled_back.id).exists() and sent == []
        with transaction.atomic():
            kept = fx.noop_task.enqueue()
            assert sent == []  # not before the commit
        assert sent == [kept.id] and Task.objects.filter(pk=kept.id).exists()
        outside = fx.noop_task.enqueue()
        assert sent == [kept.id, outside.id]
    finally:
        task_enqueued.disconnect(on_enqueued)


async def test_aenqueue_and_aget_result() -> None:
    result = await fx.async_add.aenqueue(2, 3)
    again = await fx.async_add.aget_result(result.id)
    assert again.id == result.id and again.status == TaskResultStatus.READY
    assert again.args == [2, 3] and again.task.func is fx.async_add.func


def test_unknown_ids_raise_task_result_does_not_exist(alice: Any) -> None:
    tool_task = Task.objects.create(owner=alice, tool="read_file", args={"path": "a"})
    for unknown in ("nope", tool_task.id):
        with pytest.raises(TaskResultDoesNotExist):
            default_task_backend.get_result(unknown)


def test_results_map_statuses_errors_and_return_values() -> None:
    result = fx.calculate_meaning_of_life.enqueue()
    now = timezone.now()
    log = [
        {
            "attempt": 1,
            "worker_id": "w1",
            "started_at": "2026-12-01T10:00:00Z",
            "finished_at": "2026-12-01T10:00:01Z",
            "error": {
                "type": "exception",
                "message": "boom",
                "exception_class_path": "builtins.ValueError",
                "traceback": "Traceback ...",
            },
        },
        {
            "attempt": 2,
            "worker_id": "w2",
            "started_at": "2026-12-01T10:00:02Z",
            "finished_at": "2026-12-01T10:00:03Z",
            "error": {"type": "lost", "message": "Worker w2 stopped renewing its lease."},
        },
    ]
    Task.objects.filter(pk=result.id).update(
        status=TaskStatus.RUNNING, attempts=3, worker_id="w3", started_at=now, attempt_log=log
    )
    result.refresh()
    assert result.status == TaskResultStatus.RUNNING and result.worker_ids == ["w1", "w2", "w3"]
    assert [e.exception_class_path for e in result.errors] == [
        "builtins.ValueError",
        "tasks_app.django_tasks.TaskAttemptFailed",
    ]
    assert result.errors[0].exception_class is ValueError
    assert result.started_at == datetime.fromisoformat("2026-12-01T10:00:00Z")
    assert result.last_attempted_at == now and result.finished_at is None
    with pytest.raises(ValueError, match="not finished"):
        _ = result.return_value
    Task.objects.filter(pk=result.id).update(
        status=TaskStatus.SUCCEEDED, result={"return_value": 42}, finished_at=now
    )
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 42
    assert result.finished_at == now and result.attempts == 2
    Task.objects.filter(pk=result.id).update(status=TaskStatus.CANCELLED, result=None)
    assert default_task_backend.get_result(result.id).status == TaskResultStatus.FAILED


async def test_staff_see_code_enqueued_tasks_and_users_do_not(as_alice: Any, as_carol: Any) -> None:
    result = await fx.noop_task.aenqueue()
    staff = await as_carol.get(f"/api/v1/tasks/{result.id}")
    assert staff.status_code == 200
    body = staff.json()
    assert (body["tool"], body["source"], body["owner"]) == ("django_task", "django", None)
    assert body["args"]["task"] == "tests.django_tasks_fixtures.noop_task"
    assert (await as_alice.get(f"/api/v1/tasks/{result.id}")).status_code == 404
    assert (await as_alice.get("/api/v1/tasks?source=django")).json()["tasks"] == []
    listed = (await as_carol.get("/api/v1/tasks?source=django")).json()["tasks"]
    assert [t["id"] for t in listed] == [result.id]


async def test_nobody_can_submit_a_django_task_over_the_api(as_carol: Any) -> None:
    """Running a Django task imports a module path from its arguments: only code may do it."""
    response = await as_carol.post(
        "/api/v1/tasks",
        data={"tool": "django_task", "args": {"task": "os.system", "args": ["true"]}},
        content_type="application/json",
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "unknown_tool"
    tools = (await as_carol.get("/api/v1/tools")).json()["tools"]
    assert "django_task" not in [t["name"] for t in tools]
    assert await Task.objects.acount() == 0
