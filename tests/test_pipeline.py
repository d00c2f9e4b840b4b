"""The task's way through ClawSite in one process: submit, wake-up, claim, run, finish, events."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.layers import get_channel_layer
from django.db.backends.signals import connection_created
from django.test import AsyncClient

from tasks_app import events
from tasks_app.models import Task, TaskStatus
from tasks_app.worker import WorkerEngine
from tests.tools_for_tests import await_tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


async def submit(client: AsyncClient, tool: str, **args: Any) -> str:
    response = await client.post(
        "/api/v1/tasks",
        data=json.dumps({"tool": tool, "args": args}),
        content_type="application/json",
    )
    assert response.status_code == 202, response.content
    return response.json()["id"]


@pytest.fixture
async def engine() -> Any:
    engine = WorkerEngine(concurrency=4, tick_seconds=0.2)
    yield engine
    await engine.stop(grace_seconds=5)


async def test_write_then_read_through_the_worker(
    as_alice: AsyncClient, alice: Any, engine: WorkerEngine, settings: Any
) -> None:
    await engine.start()
    write_id = await submit(as_alice, "write_file", path="notes/todo.md", content="buy milk\n")
    [written] = await await_tasks([write_id])
    assert written.status == TaskStatus.SUCCEEDED, written.error
    assert written.result == {"path": "notes/todo.md", "size": 9}
    assert (
        settings.CLAWSITE_WORKSPACE_ROOT / "alice" / "notes" / "todo.md"
    ).read_text() == "buy milk\n"
    assert written.attempts == 1 and written.worker_id == engine.worker_id
    assert written.started_at <= written.finished_at and written.duration_ms >= 0
    assert written.version == 3  # queued, running, succeeded

    read_id = await submit(as_alice, "read_file", path="notes/todo.md")
    listing_id = await submit(as_alice, "list_directory", path=".", recursive=True)
    read, listing = sorted(
        await await_tasks([read_id, listing_id]), key=lambda t: t.tool != "read_file"
    )
    assert read.result["content"] == "buy milk\n" and read.result["truncated"] is False
    assert [e["path"] for e in listing.result["entries"]] == ["notes", "notes/todo.md"]


async def test_tool_errors_fail_the_task_with_a_stable_type(
    as_alice: AsyncClient, engine: WorkerEngine, settings: Any
) -> None:
    await engine.start()
    outside = settings.CLAWSITE_WORKSPACE_ROOT / "alice_evil"
    outside.mkdir(parents=True)
    (outside / "secret").write_text("s3cret")
    (settings.CLAWSITE_WORKSPACE_ROOT / "alice").mkdir(parents=True, exist_ok=True)
    (settings.CLAWSITE_WORKSPACE_ROOT / "alice" / "link").symlink_to(outside / "secret")
    missing = await submit(as_alice, "read_file", path="nope.txt")
    escape = await submit(as_alice, "read_file", path="link")
    tasks = {t.id: t for t in await await_tasks([missing, escape])}
    assert (
        tasks[missing].status == TaskStatus.FAILED and tasks[missing].error["type"] == "not_found"
    )
    assert (
        tasks[escape].status == TaskStatus.FAILED
        and tasks[escape].error["type"] == "path_outside_workspace"
    )
    assert "s3cret" not in json.dumps(tasks[escape].error)


async def test_a_task_submitted_with_no_worker_runs_on_the_tick(
    as_alice: AsyncClient, alice: Any
) -> None:
    """The wake-up goes nowhere (no worker yet); the worker's own tick still finds the task."""
    task_id = await submit(as_alice, "create_directory", path="made")
    await asyncio.sleep(0.3)
    assert (await Task.objects.aget(pk=task_id)).status == TaskStatus.QUEUED
    engine = WorkerEngine(concurrency=2, tick_seconds=0.2)
    await engine.start()
    try:
        [task] = await await_tasks([task_id])
    finally:
        await engine.stop(grace_seconds=5)
    assert task.status == TaskStatus.SUCCEEDED and task.result == {"path": "made", "created": True}


async def test_a_refused_wakeup_costs_latency_only(
    as_alice: AsyncClient, engine: WorkerEngine, monkeypatch: Any
) -> None:
    """ChannelFull (or Redis away) on the wake-up: the row is committed, the tick runs it."""
    from channels.exceptions import ChannelFull

    async def refuse(*args: Any, **kwargs: Any) -> None:
        raise ChannelFull()

    monkeypatch.setattr(get_channel_layer(), "group_send", refuse)
    await engine.start()
    task_id = await submit(as_alice, "create_directory", path="x")
    [task] = await await_tasks([task_id])
    assert task.status == TaskStatus.SUCCEEDED


async def test_every_status_change_reaches_the_owners_group_after_commit(
    as_alice: AsyncClient, alice: Any, engine: WorkerEngine
) -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(events.owner_group(alice.id), channel)
    await engine.start()
    task_id = await submit(as_alice, "create_directory", path="d")
    statuses: list[str] = []
    while "succeeded" not in statuses:
        message = await asyncio.wait_for(layer.receive(channel), 10)
        assert message["type"] == "task.updates"
        statuses += [t["status"] for t in message["tasks"] if t["id"] == task_id]
    assert statuses[0] == "queued" and statuses[-1] == "succeeded"
    # Each frame's state was committed before it was sent.
    assert (await Task.objects.aget(pk=task_id)).status == TaskStatus.SUCCEEDED


async def test_requests_and_worker_tasks_open_no_connection_of_their_own(
    as_alice: AsyncClient, engine: WorkerEngine, settings: Any
) -> None:
    """Each database thread connects once; requests and tasks reuse its connection."""
    await engine.start()
    opened: list[Any] = []

    def count(sender: Any, connection: Any, **kwargs: Any) -> None:
        opened.append(connection)

    async def load(round: int) -> None:
        ids = await asyncio.gather(
            *(submit(as_alice, "create_directory", path=f"d{round}-{i}") for i in range(60))
        )
        for _ in range(20):
            assert (await as_alice.get("/api/v1/tasks?limit=5")).status_code == 200
        await await_tasks(list(ids))

    connection_created.connect(count)
    try:
        for round in range(3):
            await load(round)
    finally:
        connection_created.disconnect(count)
    # 180 submits, 60 list requests and 180 tasks: at most one connection per database thread
    # (the pool starts its threads as load needs them), none per request or task.
    assert len(opened) <= settings.CLAWSITE_DB_THREADS


async def test_failed_sends_are_logged_once_per_interval(monkeypatch: Any, caplog: Any) -> None:
    """A Redis outage fails every send; the log gets one warning per interval, not one each."""
    from channels.exceptions import ChannelFull

    async def refuse(*args: Any, **kwargs: Any) -> None:
        raise ChannelFull()

    monkeypatch.setattr(get_channel_layer(), "group_send", refuse)
    monkeypatch.setattr(events, "_last_failure_log", float("-inf"))
    with caplog.at_level("WARNING", logger="tasks_app.events"):
        for _ in range(50):
            await events._safe_group_send("tasks.staff", {"type": "task.updates", "tasks": []})
    warnings = [r for r in caplog.records if r.name == "tasks_app.events"]
    assert len(warnings) == 1 and "failed" in warnings[0].getMessage()
