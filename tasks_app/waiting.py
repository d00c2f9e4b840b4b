"""Waiting for a task, for clients without websockets: the long-polling ``GET /tasks/<id>?wait=``
and MCP's ``tools/call``.

The row is the truth, so a waiter reads it again, gently (a growing interval, never a tight
loop; one query on a database thread each). The workers' updates to the owner's group on the
channel layer (the ones ``/ws/tasks/`` watchers get) wake a waiter early, so a wait ends a few
milliseconds after its task changed instead of at the next interval; a lost hint only costs the
interval. One channel per process listens for all its waiters.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.layers import get_channel_layer

from .events import owner_group
from .models import Task

logger = logging.getLogger(__name__)

WAIT_POLL_SECONDS = (0.05, 0.1, 0.2, 0.4, 0.5)
RELISTEN_SECONDS = 1.0


class _ChangeListener:
    """This process's subscriptions: owner groups joined while one of their tasks has a waiter,
    and one receive loop waking the waiters of the tasks named in each update."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.layer = get_channel_layer()
        self.channel: str | None = None
        self.waiters: dict[str, set[asyncio.Event]] = {}
        self.owners: dict[Any, int] = {}
        self.receiving: asyncio.Task[None] | None = None
        self.joining = asyncio.Lock()

    async def add(self, owner_id: Any, task_id: str, woken: asyncio.Event) -> bool:
        """Wake ``woken`` on changes of the task; False when there is no channel layer."""
        if self.layer is None or owner_id is None:
            return False
        async with self.joining:
            try:
                if self.channel is None:
                    self.channel = await self.layer.new_channel()
                if not self.owners.get(owner_id):
                    await self.layer.group_add(owner_group(owner_id), self.channel)
            except Exception:  # Redis away: the waiter polls, as it would anyway
                logger.warning("task waits fall back to polling", exc_info=True)
                return False
            self.owners[owner_id] = self.owners.get(owner_id, 0) + 1
        self.waiters.setdefault(task_id, set()).add(woken)
        if self.receiving is None or self.receiving.done():
            self.receiving = asyncio.ensure_future(self._receive())
        return True

    async def remove(self, owner_id: Any, task_id: str, woken: asyncio.Event) -> None:
        events = self.waiters.get(task_id, set())
        events.discard(woken)
        if not events:
            self.waiters.pop(task_id, None)
        async with self.joining:
            self.owners[owner_id] -= 1
            if self.owners[owner_id]:
                return
            del self.owners[owner_id]
            try:
                await self.layer.group_discard(owner_group(owner_id), self.channel)
            except Exception:  # the membership expires on its own (group_expiry)
                logger.debug("group_discard failed", exc_info=True)

    async def _receive(self) -> None:
        while self.owners:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("task change listener: receive failed; retrying", exc_info=True)
                await asyncio.sleep(RELISTEN_SECONDS)
                continue
            tasks = message.get("tasks") or [message.get("task") or {}]
            for task in tasks:
                for woken in self.waiters.get(task.get("id"), ()):
                    woken.set()


_listener: _ChangeListener | None = None


def _listener_for_loop() -> _ChangeListener:
    global _listener
    loop = asyncio.get_running_loop()
    if _listener is None or _listener.loop is not loop:
        _listener = _ChangeListener(loop)  # a new loop (a test's) gets its own
    return _listener


async def await_task(
    task: Task,
    fetch: Callable[[], Awaitable[Task]],
    *,
    wait: float | None = None,
    on_change: Callable[[Task], Awaitable[None]] | None = None,
) -> Task:
    """``task`` read again until it is terminal, or ``wait`` seconds passed (None: no limit).

    ``fetch`` reads the row; ``on_change`` hears each newer version seen on the way."""
    if task.is_terminal:
        return task
    loop = asyncio.get_running_loop()
    deadline = None if wait is None else loop.time() + wait
    listener, woken = _listener_for_loop(), asyncio.Event()
    listening = await listener.add(task.owner_id, task.id, woken)
    try:
        step = 0
        while not task.is_terminal:
            delay = WAIT_POLL_SECONDS[min(step, len(WAIT_POLL_SECONDS) - 1)]
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                delay = min(delay, remaining)
            try:
                await asyncio.wait_for(woken.wait(), delay)
            except TimeoutError:
                step += 1
            woken.clear()
            newer = await fetch()
            if on_change is not None and newer.version != task.version:
                await on_change(newer)
            task = newer
    finally:
        if listening:
            await listener.remove(task.owner_id, task.id, woken)
    return task
