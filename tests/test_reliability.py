"""Cancel and retry rules, idempotency under concurrency, result expiry (prune_tasks), and
the attempt history in the API and the admin."""

from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from tasks_app import services, store
from tasks_app.errors import ApiError
from tasks_app.events import owner_group
from tasks_app.models import Task, TaskStatus
from tasks_app.retry import status_after_failure
from tasks_app.store import Completion

pytestmark = pytest.mark.django_db(transaction=True)


def read_task(user: Any, **fields: Any) -> Task:
    submission, tool = services.validate_submission(
        {"tool": "read_file", "args": {"path": "x"}, **fields}, user
    )
    ((task, _),) = services.submit_tasks(user, [(submission, tool)])
    return task


def run_and_finish(task: Task, status: str, error: dict[str, Any] | None = None) -> Task:
    with transaction.atomic():
        claimed = store.claim_runnable_tasks("w1", 1, timezone.now(), timedelta(seconds=30))
        assert [t.id for t in claimed] == [task.id]
        store.complete_tasks(
            "w1",
            [Completion(task=claimed[0], status=status, error=error, finished_at=timezone.now())],
        )
    return Task.objects.get(pk=task.id)


# --- cancel and retry -------------------------------------------------------------------------------


def test_cancel_queued_is_immediate_and_terminal_is_a_conflict(alice: Any) -> None:
    task = services.cancel_task(read_task(alice))
    assert task.status == TaskStatus.CANCELLED and task.error["type"] == "cancelled"
    assert Task.objects.get(pk=task.id).status == TaskStatus.CANCELLED
    with pytest.raises(ApiError) as raised:
        services.cancel_task(task)
    assert raised.value.code == "conflict"


def test_cancel_running_flags_it_without_changing_its_version(alice: Any) -> None:
    task = read_task(alice)
    with transaction.atomic():
        (running,) = store.claim_runnable_tasks("w1", 1, timezone.now(), timedelta(seconds=30))
    answered = services.cancel_task(task)
    row = Task.objects.get(pk=task.id)
    assert answered.status == TaskStatus.RUNNING and row.cancel_requested
    # The worker's next write bumps it: two states never share one version.
    assert row.version == running.version


def test_retry_requeues_failed_with_history_and_refuses_other_states(alice: Any) -> None:
    task = run_and_finish(
        read_task(alice, max_attempts=1), TaskStatus.FAILED, {"type": "boom", "message": "no"}
    )
    task = services.retry_task(task)
    row = Task.objects.get(pk=task.id)
    assert (row.status, row.attempts, row.max_attempts, row.error, row.finished_at) == (
        TaskStatus.QUEUED,
        1,
        2,
        None,
        None,
    )
    assert row.attempt_log[0]["error"]["type"] == "boom"
    for status in (TaskStatus.QUEUED, TaskStatus.SUCCEEDED):
        Task.objects.filter(pk=task.id).update(status=status)
        with pytest.raises(ApiError) as raised:
            services.retry_task(task)
        assert raised.value.code == "conflict"


def test_attempt_history_is_in_the_api_and_read_only_in_the_admin(alice: Any, carol: Any) -> None:
    task = run_and_finish(read_task(alice), TaskStatus.FAILED, {"type": "boom", "message": "no"})
    api = Client(headers={"Authorization": f"Bearer {alice.raw_token}"})
    body = api.get(f"/api/v1/tasks/{task.id}").json()
    assert [e["error"]["type"] for e in body["attempt_history"]] == ["boom"]
    admin = Client()
    admin.force_login(carol)
    page = admin.get(f"/admin/tasks_app/task/{task.id}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<td>boom</td><td>no</td>" in html and "<td>w1</td>" in html
    assert 'name="attempt_log"' not in html  # shown, not editable


def test_admin_actions_cancel_and_retry(alice: Any, carol: Any) -> None:
    failed = run_and_finish(read_task(alice), TaskStatus.FAILED, {"type": "boom", "message": "no"})
    queued = read_task(alice)
    admin = Client()
    admin.force_login(carol)
    url = "/admin/tasks_app/task/"
    admin.post(url, {"action": "cancel_tasks", "_selected_action": [queued.id]})
    admin.post(url, {"action": "retry_tasks", "_selected_action": [failed.id]})
    assert Task.objects.get(pk=queued.id).status == TaskStatus.CANCELLED
    assert Task.objects.get(pk=failed.id).status == TaskStatus.QUEUED


# --- idempotency under concurrency ------------------------------------------------------------------


def test_concurrent_submissions_with_one_key_create_one_task(alice: Any) -> None:
    results: list[tuple[str, bool]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def submit() -> None:
        try:
            submission, tool = services.validate_submission(
                {"tool": "read_file", "args": {"path": "x"}, "idempotency_key": "once"}, alice
            )
            barrier.wait(timeout=10)
            ((task, created),) = services.submit_tasks(alice, [(submission, tool)])
            results.append((task.id, created))
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert len({task_id for task_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert Task.objects.filter(owner=alice, idempotency_key="once").count() == 1


# --- prune_tasks ------------------------------------------------------------------------------------


def aged(user: Any, status: str, days: float) -> Task:
    task = read_task(user)
    finished = timezone.now() - timedelta(days=days) if status != TaskStatus.QUEUED else None
    Task.objects.filter(pk=task.id).update(status=status, finished_at=finished)
    return task


def test_prune_deletes_only_finished_tasks_past_retention(alice: Any, settings: Any) -> None:
    settings.CLAWSITE_RESULT_RETENTION_DAYS = 7
    old = [
        aged(alice, s, 10) for s in (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED)
    ]
    recent = aged(alice, TaskStatus.SUCCEEDED, 1)
    waiting = aged(alice, TaskStatus.QUEUED, 0)
    Task.objects.filter(pk=waiting.id).update(created_at=timezone.now() - timedelta(days=30))
    running = read_task(alice)
    Task.objects.filter(pk=running.id).update(
        status=TaskStatus.RUNNING, created_at=timezone.now() - timedelta(days=30)
    )

    out = StringIO()
    call_command("prune_tasks", "--dry-run", stdout=out)
    assert "Would delete 3" in out.getvalue() and Task.objects.count() == 6

    call_command("prune_tasks", "--batch-size", "2", stdout=out)
    assert "Deleted 3" in out.getvalue()
    assert set(Task.objects.values_list("id", flat=True)) == {recent.id, waiting.id, running.id}
    assert not Task.objects.filter(pk__in=[t.id for t in old]).exists()

    call_command("prune_tasks", "--older-than", "0.5", stdout=out)
    assert set(Task.objects.values_list("id", flat=True)) == {waiting.id, running.id}


def test_prune_refuses_bad_options_and_respects_retention_off(alice: Any, settings: Any) -> None:
    aged(alice, TaskStatus.SUCCEEDED, 100)
    settings.CLAWSITE_RESULT_RETENTION_DAYS = 0
    out = StringIO()
    call_command("prune_tasks", stdout=out)
    assert "Retention is off" in out.getvalue() and Task.objects.count() == 1
    for bad in (["--older-than", "-1"], ["--batch-size", "0"]):
        with pytest.raises(CommandError):
            call_command("prune_tasks", *bad)
    assert Task.objects.count() == 1


def next_deletion(layer: Any, channel: str) -> dict[str, Any]:
    """The next message on ``channel`` that is not a task update (submits send those)."""
    while (message := async_to_sync(layer.receive)(channel))["type"] == "task.updates":
        pass
    return message


def test_deletes_tell_the_watchers_after_commit(alice: Any, admin_client: Client) -> None:
    """The admin's delete and prune_tasks go through services: each deleted task's watchers get
    a ``task.deleted`` message (queued tasks are not deleted, so nothing is said of them)."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(owner_group(alice.id), channel)
    done, waiting = aged(alice, TaskStatus.SUCCEEDED, 10), aged(alice, TaskStatus.QUEUED, 0)
    admin_client.post(
        "/admin/tasks_app/task/",
        {"action": "delete_finished_tasks", "_selected_action": [done.pk, waiting.pk]},
    )
    assert next_deletion(layer, channel) == {"type": "task.deleted", "id": done.pk}
    assert list(Task.objects.values_list("pk", flat=True)) == [waiting.pk]

    old = aged(alice, TaskStatus.FAILED, 10)
    assert services.prune_finished_tasks(timedelta(days=7)) == 1
    assert next_deletion(layer, channel) == {"type": "task.deleted", "id": old.pk}


def test_one_rule_decides_whether_a_failed_attempt_is_tried_again(alice: Any) -> None:
    task = read_task(alice, max_attempts=2)
    task.attempts = 1
    assert status_after_failure(task, retryable=True) == TaskStatus.QUEUED
    assert status_after_failure(task, retryable=False) == TaskStatus.FAILED
    task.attempts = 2
    assert status_after_failure(task, retryable=True) == TaskStatus.FAILED
