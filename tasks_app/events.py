"""Hints over the channel layer: task updates for watchers, wake-ups for workers.

The database row is the truth; these messages only save latency, so a lost or refused one
(``ChannelFull``, Redis away) is logged and dropped, never retried into the request path.
Both kinds are coalesced on the process's event loop: watchers get one frame per group per
``FLUSH_SECONDS`` holding each changed task's latest state, workers one wake-up per burst.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from .models import Task
from .serializers import task_to_dict

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.02
WAKEUP_SECONDS = 0.02
STAFF_GROUP = "tasks.staff"
WORKERS_GROUP = "clawsite.workers"


def owner_group(owner_id: int) -> str:
    return f"tasks.owner.{owner_id}"


class _Hub:
    """Per-process, bound to the event loop that sends (daphne's, or the worker's)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: dict[str, dict[str, Any]] = {}
        self.flush_scheduled = False
        self.wakeup_scheduled = False
        self.last_wakeup = float("-inf")
        self.sending: set[asyncio.Future[None]] = set()

    # Both methods below run on self.loop only.
    def add_updates(self, payloads: list[dict[str, Any]]) -> None:
        for payload in payloads:
            current = self.pending.get(payload["id"])
            if current is None or current["version"] <= payload["version"]:
                self.pending[payload["id"]] = payload
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_later(FLUSH_SECONDS, lambda: asyncio.ensure_future(self.flush()))

    def add_wakeup(self) -> None:
        # At most one wake-up per WAKEUP_SECONDS: the first of a burst goes at once, the rest
        # ride on one sent when the interval is over. A busy worker claims again on its own, so
        # more would only cost the sender (a group send is ~1.5 ms: at thousands of single
        # submits a second, one per submit held daphne's loop most of the time, per the bench).
        if self.wakeup_scheduled:
            return
        self.wakeup_scheduled = True
        delay = self.last_wakeup + WAKEUP_SECONDS - self.loop.time()
        if delay > 0:
            self.loop.call_later(delay, self._start_wakeup)
        else:
            self._start_wakeup()

    def _start_wakeup(self) -> None:
        sending = asyncio.ensure_future(self.send_wakeup())
        self.sending.add(sending)
        sending.add_done_callback(self.sending.discard)

    async def flush(self) -> None:
        self.flush_scheduled = False
        payloads, self.pending = list(self.pending.values()), {}
        await send_updates(payloads)

    async def send_wakeup(self) -> None:
        self.wakeup_scheduled = False
        self.last_wakeup = self.loop.time()
        await _safe_group_send(WORKERS_GROUP, {"type": "task.wakeup"})


_hub: _Hub | None = None
_hub_lock = threading.Lock()


def bind_event_loop(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Make the running loop this process's sender (daphne's on first request, the worker's)."""
    global _hub
    loop = loop or asyncio.get_running_loop()
    if _hub is None or _hub.loop is not loop or loop.is_closed():
        with _hub_lock:
            _hub = _Hub(loop)


def _live_hub() -> _Hub | None:
    """The process's sender, or None when no loop runs (a command, a sync-only process)."""
    hub = _hub
    if hub is not None and hub.loop.is_running() and not hub.loop.is_closed():
        return hub
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return None
    bind_event_loop()
    return _hub


def _group_messages(payloads: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for payload in payloads:
        groups.setdefault(owner_group(payload["owner"]), []).append(payload)
        groups.setdefault(STAFF_GROUP, []).append(payload)
    return groups


async def _safe_group_send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(group, message)
    except Exception:  # a hint only: the row is committed, the watcher or worker catches up
        logger.warning("channel layer send to %s failed", group, exc_info=True)


async def send_updates(payloads: list[dict[str, Any]]) -> None:
    for group, tasks in _group_messages(payloads).items():
        await _safe_group_send(group, {"type": "task.updates", "tasks": tasks})


def publish_task_changes(tasks: Iterable[Task]) -> None:
    """Tell watchers about these tasks' current state. Thread-safe; call after commit."""
    payloads = [task_to_dict(task) for task in tasks]
    if not payloads:
        return
    hub = _live_hub()
    if hub is None:
        async_to_sync(send_updates)(payloads)
    elif _on_loop(hub.loop):
        hub.add_updates(payloads)
    else:
        hub.loop.call_soon_threadsafe(hub.add_updates, payloads)


def wake_workers() -> None:
    """Tell the workers there is work. Thread-safe, coalesced; call after commit."""
    hub = _live_hub()
    if hub is None:
        async_to_sync(_safe_group_send)(WORKERS_GROUP, {"type": "task.wakeup"})
    elif _on_loop(hub.loop):
        hub.add_wakeup()
    else:
        hub.loop.call_soon_threadsafe(hub.add_wakeup)


def ask_workers_to_cancel(task_id: str) -> None:
    """Hint the worker running ``task_id`` to cancel it now rather than on its next tick."""
    message = {"type": "task.cancel", "id": task_id}
    hub = _live_hub()
    if hub is None:
        async_to_sync(_safe_group_send)(WORKERS_GROUP, message)
    else:
        asyncio.run_coroutine_threadsafe(_safe_group_send(WORKERS_GROUP, message), hub.loop)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
