"""Group commit: concurrent calls run together in one transaction on a database thread."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence

from .threads import run_in_db_thread


class GroupCommit[Item, Result]:
    """Calls made at the same moment, run together: ``await group(item)`` hands ``item`` to
    ``run_many(items) -> results`` (sync, on a database thread, one transaction), with every
    item that arrived while the previous group was in the database.

    The first call goes at once (no added latency when alone); under load, N concurrent single
    submits cost one commit and one thread round trip instead of N. ``run_many`` returns one
    result per item; an exception there is raised to that item's caller only.
    """

    def __init__(self, run_many: Callable[[list[Item]], Sequence[Result | Exception]]) -> None:
        self.run_many = run_many
        # Per event loop (daphne has one; tests make one per test).
        self._queues: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, list[tuple[Item, asyncio.Future[Result]]]
        ] = weakref.WeakKeyDictionary()
        self._draining: set[asyncio.Task[None]] = set()

    async def __call__(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = []
            drain = loop.create_task(self._drain(loop, queue))
            self._draining.add(drain)
            drain.add_done_callback(self._draining.discard)
        queue.append((item, future))
        return await future

    async def _drain(
        self, loop: asyncio.AbstractEventLoop, queue: list[tuple[Item, asyncio.Future[Result]]]
    ) -> None:
        try:
            while queue:
                group = queue[:]
                del queue[:]
                try:
                    results = await run_in_db_thread(self.run_many, [item for item, _ in group])
                except Exception as error:  # the whole group failed (database away): tell each
                    results = [error] * len(group)
                for (_, future), result in zip(group, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            if self._queues.get(loop) is queue:
                del self._queues[loop]
            for _, future in queue:  # cancelled mid-way (loop closing): nobody waits forever
                if not future.done():
                    future.cancel()
