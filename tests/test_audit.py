"""The audit log: token, task and cache changes and every program or fetch execution, with who,
what, the arguments' digest and the outcome; read-only in the admin; pruned with the tasks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.test import AsyncClient, Client
from django.utils import timezone

from tasks_app import audit
from tasks_app.attempt import Attempt
from tasks_app.audit import AuditEvent
from tasks_app.models import ApiToken, Limit, Queue, Task, TaskStatus
from tools_app.runner import ToolOwner

from .test_pages_admin import action

pytestmark = pytest.mark.django_db(transaction=True)


def events(action_name: str) -> list[tuple[str, str, str]]:
    return [
        (event.actor_name, event.target, event.outcome)
        for event in AuditEvent.objects.filter(action=action_name).order_by("at", "id")
    ]


async def test_cancel_and_retry_are_recorded_with_their_outcome(
    alice: Any, as_alice: AsyncClient
) -> None:
    task = await Task.objects.acreate(owner=alice, tool="read_file", args={"path": "a"})
    await as_alice.post(f"/api/v1/tasks/{task.pk}/cancel")
    await as_alice.post(f"/api/v1/tasks/{task.pk}/cancel")  # already cancelled: conflict
    await as_alice.post(f"/api/v1/tasks/{task.pk}/retry")
    ok = [
        (event.actor_name, event.target, event.outcome)
        async for event in AuditEvent.objects.order_by("id")
    ]
    assert ok == [
        ("alice", str(task.pk), "ok"),
        ("alice", str(task.pk), "conflict"),
        ("alice", str(task.pk), "ok"),
    ]
    assert [e.action async for e in AuditEvent.objects.order_by("id")] == [
        "task.cancel",
        "task.cancel",
        "task.retry",
    ]


def test_tokens_deletes_and_cache_clears_in_the_admin_are_recorded(carol: Any, alice: Any) -> None:
    client = Client()
    client.force_login(carol)
    client.post("/admin/tasks_app/apitoken/add/", {"user": str(alice.pk), "name": "ci"})
    token = ApiToken.objects.get(user=alice, name="ci")
    assert events("token.create") == [("carol", token.prefix, "ok")]
    action(client, "/admin/tasks_app/apitoken/", "revoke_tokens", [token.pk])
    assert events("token.revoke") == [("carol", token.prefix, "ok")]
    done = Task.objects.create(owner=alice, tool="read_file", args={}, status=TaskStatus.FAILED)
    action(client, "/admin/tasks_app/task/", "delete_finished_tasks", [done.pk])
    assert events("task.delete") == [("carol", str(done.pk), "ok")]
    client.post("/admin/tools/cache/", {"tool": "read_file"})
    assert events("cache.clear") == [("carol", "read_file", "ok")]


async def test_cache_clear_through_the_api_is_recorded(as_carol: AsyncClient) -> None:
    response = await as_carol.delete("/api/v1/cache?tool=hash_file")
    assert response.status_code == 200
    assert [
        (e.actor_name, e.target) async for e in AuditEvent.objects.filter(action="cache.clear")
    ] == [("carol", "hash_file")]


@pytest.mark.parametrize(
    ("tool", "args", "outcome"),
    [
        ("run_command", {"argv": ["echo", "hi"]}, "ok"),
        ("http_fetch", {"url": "http://127.0.0.1:9/"}, "address_not_allowed"),
    ],
)
async def test_every_program_and_fetch_execution_is_recorded(
    alice: Any, settings: Any, tool: str, args: dict[str, Any], outcome: str
) -> None:
    settings.CLAWSITE_COMMAND_ALLOWLIST = ["echo"]
    task = await Task.objects.acreate(owner=alice, tool=tool, args=args, timeout=30)
    await Attempt(task).run(ToolOwner(alice.pk, "alice"), lambda *progress: None)
    event = await AuditEvent.objects.aget(action=f"tool.{tool}")
    assert (event.actor_id, event.target) == (alice.pk, str(task.pk))
    assert event.args_digest == audit.digest(args) and event.outcome == outcome


def test_the_log_is_read_only_in_the_admin(carol: Any, alice: Any) -> None:
    event = audit.record(alice, "task.cancel", "x")
    client = Client()
    client.force_login(carol)
    assert "task.cancel" in client.get("/admin/tasks_app/auditevent/").content.decode()
    assert client.get("/admin/tasks_app/auditevent/add/").status_code == 403
    client.post(f"/admin/tasks_app/auditevent/{event.pk}/change/", {"action": "nothing"})
    assert (
        client.post(f"/admin/tasks_app/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    event.refresh_from_db()
    assert event.action == "task.cancel"


def test_the_log_is_pruned_with_the_tasks(alice: Any) -> None:
    old = audit.record(alice, "task.cancel", "old")
    AuditEvent.objects.filter(pk=old.pk).update(at=timezone.now() - timedelta(days=40))
    recent = audit.record(alice, "task.cancel", "recent")
    call_command("prune_tasks", "--older-than", "30")
    assert not AuditEvent.objects.filter(pk=old.pk).exists()
    assert AuditEvent.objects.filter(pk=recent.pk).exists()
    assert events("task.prune") == [("", "0 tasks", "ok")]


def test_queue_pauses_and_limit_edits_are_recorded(carol: Any, as_carol: AsyncClient) -> None:
    client = Client()
    client.force_login(carol)
    async_to_sync(as_carol.post)("/api/v1/queues/long/pause")
    queue = Queue.objects.get(name="long")
    action(client, "/admin/tasks_app/queue/", "resume_queues", [queue.pk])
    assert events("queue.pause") == [("carol", "long", "ok")]
    assert events("queue.resume") == [("carol", "long", "ok")]

    client.post(
        "/admin/tasks_app/limit/add/", {"key": "tool:llm_chat", "concurrency": "5", "rate": ""}
    )
    limit = Limit.objects.get(key="tool:llm_chat")
    client.post(
        f"/admin/tasks_app/limit/{limit.pk}/change/",
        {"key": "tool:llm_chat", "concurrency": "2", "rate": "40/m"},
    )
    action(client, "/admin/tasks_app/limit/", "delete_selected", [limit.pk])
    client.post(
        "/admin/tasks_app/limit/",
        {"action": "delete_selected", "post": "yes", "_selected_action": [str(limit.pk)]},
    )
    assert not Limit.objects.exists()
    assert events("limit.change") == [("carol", "tool:llm_chat", "ok")] * 2
    assert events("limit.delete") == [("carol", "tool:llm_chat", "ok")]
    digests = AuditEvent.objects.filter(action="limit.change").values_list("args_digest", flat=True)
    assert len(set(digests)) == 2  # the new values are part of what was recorded
