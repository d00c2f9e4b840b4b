"""Waiting for a task (the long poll and MCP calls): woken by the channel layer's update of the
task, with polling as the fallback; nothing left subscribed afterwards."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.layers import get_channel_layer

from tasks_app import waiting
from tasks_app.events import owner_group
from tasks_app.models import Task, TaskStatus

pytestmark = pytest.mark.timeout(60)


def task_of(owner_id: int, status: str = TaskStatus.QUEUED, version: int = 1) -> Task:
    return Task(id="t-1", owner_id=owner_id, tool="read_file", status=status, version=version)


async def test_an_update_on_the_owners_group_wakes_the_waiter_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Polls an hour apart: only the update can end this wait before the test's timeout.
    monkeypatch.setattr(waiting, "WAIT_POLL_SECONDS", (3600.0,))
    fetches: list[Task] = []
    changes: list[Task] = []

    async def fetch() -> Task:
        fetches.append(task_of(7, TaskStatus.SUCCEEDED, version=3))
        return fetches[-1]

    async def on_change(task: Task) -> None:
        changes.append(task)

    subscribed = asyncio.Event()
    add = waiting._ChangeListener.add

    async def add_then_tell(self: Any, *args: Any) -> bool:
        listening = await add(self, *args)
        subscribed.set()
        return listening

    monkeypatch.setattr(waiting._ChangeListener, "add", add_then_tell)
    waiter = asyncio.ensure_future(waiting.await_task(task_of(7), fetch, on_change=on_change))
    await asyncio.wait_for(subscribed.wait(), 30)
    listener = waiting._listener_for_loop()
    layer = get_channel_layer()
    await layer.group_send(owner_group(8), {"type": "task.updates", "tasks": [{"id": "t-1"}]})
    await layer.group_send(owner_group(7), {"type": "task.updates", "tasks": [{"id": "other"}]})
    await asyncio.sleep(0.2)
    assert not fetches  # another owner's group, another task: no reason to read the row
    await layer.group_send(owner_group(7), {"type": "task.updates", "tasks": [{"id": "t-1"}]})
    done = await asyncio.wait_for(waiter, 30)
    assert done.status == TaskStatus.SUCCEEDED and len(fetches) == 1 and changes == fetches
    assert listener.waiters == {} and listener.owners == {}


async def test_without_updates_the_waiter_polls_until_the_wait_is_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(waiting, "WAIT_POLL_SECONDS", (0.01,))
    reads: list[Any] = []

    async def fetch() -> Task:
        reads.append(1)
        return task_of(9, TaskStatus.SUCCEEDED if len(reads) == 3 else TaskStatus.RUNNING)

    done = await asyncio.wait_for(waiting.await_task(task_of(9), fetch), 30)
    assert done.status == TaskStatus.SUCCEEDED and len(reads) == 3
    still = await waiting.await_task(task_of(9), lambda: asyncio.sleep(0, task_of(9)), wait=0.05)
    assert still.status == TaskStatus.QUEUED  # the wait ran out: the state then
