"""Waiting for a task, for clients without websockets: the long-polling ``GET /tasks/<id>?wait=``
and MCP's ``tools/call``. The row is the truth, so it is read again, gently (a growing interval,
never a tight loop); each read is one query on a database thread, so many waiters block neither
each other nor the worker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from .models import Task

WAIT_POLL_SECONDS = (0.05, 0.1, 0.2, 0.4, 0.5)


async def await_task(
    task: Task,
    fetch: Callable[[], Awaitable[Task]],
    *,
    wait: float | None = None,
    on_change: Callable[[Task], Awaitable[None]] | None = None,
) -> Task:
    """``task`` read again until it is terminal, or ``wait`` seconds passed (None: no limit).

    ``fetch`` reads the row; ``on_change`` hears each newer version seen on the way."""
    loop = asyncio.get_running_loop()
    deadline = None if wait is None else loop.time() + wait
    step = 0
    while not task.is_terminal:
        delay = WAIT_POLL_SECONDS[min(step, len(WAIT_POLL_SECONDS) - 1)]
        if deadline is not None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            delay = min(delay, remaining)
        await asyncio.sleep(delay)
        step += 1
        newer = await fetch()
        if on_change is not None and newer.version != task.version:
            await on_change(newer)
        task = newer
    return task
