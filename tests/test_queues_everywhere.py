"""Queues and Django tasks wherever tool tasks show: stats, /metrics, the admin, the pages, the
websockets, prune_tasks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone

from clawsite.asgi import application
from tasks_app import metrics, queues, services
from tasks_app.models import Queue, Task, TaskStatus
from tasks_app.stats import get_stats
from tests import django_tasks_fixtures as fx
from tests.test_metrics import get_metrics
from tests.test_pages_admin import action

pytestmark = [pytest.mark.django_db(transaction=True)]


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def finish(task_id: str, status: str, **fields: Any) -> Task:
    Task.objects.filter(pk=task_id).update(
        status=status, finished_at=timezone.now(), duration_ms=5.0, **fields
    )
    return Task.objects.get(pk=task_id)


def test_stats_count_tasks_per_queue(alice: Any, bob: Any) -> None:
    Task.objects.create(owner=alice, tool="read_file", queue="a")
    Task.objects.create(owner=alice, tool="read_file", queue="a", status=TaskStatus.RUNNING)
    Task.objects.create(owner=bob, tool="read_file", queue="b")
    Task.objects.create(owner=bob, tool="read_file", queue="c", status=TaskStatus.SUCCEEDED)
    queues.set_paused("p", True)
    queues.set_paused("a", True)
    # A user sees the queues of their own work only.
    assert get_stats(alice)["queues"] == [{"name": "a", "paused": True, "queued": 1, "running": 1}]
    assert [(q["name"], q["queued"]) for q in get_stats(None)["queues"]] == [
        ("a", 1),
        ("b", 1),
        ("p", 0),
    ]


def test_metrics_per_queue_and_per_function(alice: Any) -> None:
    metrics._down_until = 0.0
    Task.objects.create(owner=alice, tool="read_file", queue="a")
    queues.set_paused("a", True)
    ok, bad = fx.calculate_meaning_of_life.enqueue(), fx.failing_task_value_error.enqueue()
    metrics.record_finished(
        [
            finish(ok.id, TaskStatus.SUCCEEDED, result={"return_value": 42}),
            finish(bad.id, TaskStatus.FAILED),
        ]
    )
    samples = get_metrics()
    assert samples[("clawsite_queue_tasks", (("queue", "a"), ("status", "queued")))] == 1
    assert samples[("clawsite_queue_paused", (("queue", "a"),))] == 1
    meaning = "tests.django_tasks_fixtures.calculate_meaning_of_life"
    failing = "tests.django_tasks_fixtures.failing_task_value_error"
    assert samples[("clawsite_django_tasks_submitted_total", (("function", meaning),))] >= 1
    key = ("clawsite_django_tasks_finished_total", (("function", meaning), ("status", "succeeded")))
    assert samples[key] >= 1
    key = ("clawsite_django_tasks_finished_total", (("function", failing), ("status", "failed")))
    assert samples[key] >= 1


def test_admin_pauses_and_resumes_queues_and_filters_by_function(carol: Any, alice: Any) -> None:
    client = client_for(carol)
    Task.objects.create(owner=alice, tool="read_file", queue="mail")
    fx.echo.enqueue(1)
    fx.noop_task.using(queue_name="mail").enqueue()
    html = client.get("/admin/tasks_app/queue/").content.decode()
    assert "mail" in html and "default" in html  # every queue with tasks has its row
    action(client, "/admin/tasks_app/queue/", "pause_queues", ["mail"])
    assert Queue.objects.get(name="mail").paused and not Queue.objects.get(name="default").paused
    action(client, "/admin/tasks_app/queue/", "resume_queues", ["mail"])
    assert not Queue.objects.get(name="mail").paused
    page = client.get("/admin/tasks_app/task/?function=tests.django_tasks_fixtures.echo")
    html = page.content.decode()
    assert page.status_code == 200 and html.count('class="action-select"') == 1
    assert "tests.django_tasks_fixtures.noop_task" in html  # offered as a filter choice
    html = client.get("/admin/tasks_app/task/?queue=mail").content.decode()
    assert html.count('class="action-select"') == 2
    assert client_for(alice).get("/admin/tasks_app/queue/").status_code == 302


def test_pages_filter_by_queue_and_show_a_django_task_for_people(carol: Any, alice: Any) -> None:
    Task.objects.create(owner=carol, tool="read_file", args={"path": "a"}, queue="mail")
    Task.objects.create(owner=carol, tool="read_file", args={"path": "b"})
    client = client_for(carol)
    html = client.get("/?queue=mail").content.decode()
    assert html.count('class="queue"') == 1 and 'value="mail"' in html
    assert client.get("/?queue=../x").status_code == 200  # ignored, never a 500
    failed = fx.failing_task_value_error.enqueue()
    finish(
        failed.id,
        TaskStatus.FAILED,
        error={
            "type": "exception",
            "message": "This Task failed due to ValueError",
            "exception_class_path": "builtins.ValueError",
            "traceback": "Traceback (most recent call last):\n  ValueError: boom <b>",
        },
    )
    html = client.get(f"/tasks/{failed.id}").content.decode()
    assert "tests.django_tasks_fixtures.failing_task_value_error" in html
    assert "builtins.ValueError" in html and "Traceback (most recent call last)" in html
    assert "boom &lt;b&gt;" in html  # escaped
    assert "none (enqueued by code)" in html
    ok = fx.echo.enqueue(1, k="v")
    finish(
        ok.id, TaskStatus.SUCCEEDED, result={"return_value": {"args": [1], "kwargs": {"k": "v"}}}
    )
    html = client.get(f"/tasks/{ok.id}").content.decode()
    assert "Return value" in html and "&quot;kwargs&quot;" in html
    assert client_for(alice).get(f"/tasks/{ok.id}").status_code == 404
    html = client.get("/?tool=django_task").content.decode()
    assert html.count('class="queue"') == 2


async def test_staff_watch_django_tasks_live_and_users_do_not(alice: Any, carol: Any) -> None:
    def socket(path: str, user: Any) -> WebsocketCommunicator:
        headers = [(b"authorization", f"Bearer {user.raw_token}".encode())]
        return WebsocketCommunicator(application, path, headers=headers)

    staff, user = socket("/ws/tasks/", carol), socket("/ws/tasks/", alice)
    assert (await staff.connect())[0] and (await user.connect())[0]
    result = await fx.noop_task.aenqueue()
    frame = await staff.receive_json_from(timeout=5)
    seen = frame["tasks"] if frame["type"] == "task.updates" else [frame["task"]]
    assert [t["id"] for t in seen] == [result.id] and seen[0]["source"] == "django"
    assert await user.receive_nothing(timeout=0.5)
    one = socket(f"/ws/tasks/{result.id}/", carol)
    assert (await one.connect())[0]
    assert (await one.receive_json_from(timeout=5))["task"]["status"] == "queued"
    row = await Task.objects.aget(pk=result.id)
    from asgiref.sync import sync_to_async

    await sync_to_async(services.cancel_task)(row)
    update = await one.receive_json_from(timeout=5)
    changed = update["tasks"] if update["type"] == "task.updates" else [update["task"]]
    assert changed[-1]["status"] == "cancelled"
    assert not (await socket(f"/ws/tasks/{result.id}/", alice).connect())[0]
    for ws in (staff, user, one):
        await ws.disconnect()


def test_prune_removes_finished_django_tasks(carol: Any) -> None:
    from django.core.management import call_command

    old = fx.noop_task.enqueue()
    fresh = fx.noop_task.enqueue()
    waiting = fx.noop_task.enqueue()
    finish(old.id, TaskStatus.SUCCEEDED)
    Task.objects.filter(pk=old.id).update(finished_at=timezone.now() - timedelta(days=40))
    finish(fresh.id, TaskStatus.SUCCEEDED)
    call_command("prune_tasks", "--older-than", "30")
    assert set(Task.objects.values_list("id", flat=True)) == {fresh.id, waiting.id}
