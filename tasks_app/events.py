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
import time
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from .models import Task
from .serializers import task_to_frame

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.02
WAKEUP_SECONDS = 0.02
STAFF_GROUP = "tasks.staff"
WORKERS_GROUP = "clawsite.workers"


def owner_group(owner_id: int) -> str:
    return f"tasks.owner.{owner_id}"


class _Hub:
    """Per-process, bound to the event loop that sends (daphne's, or the worker's).

    Any thread hands it payloads (``submit``); they are sent from the loop once per
    ``FLUSH_SECONDS``. Only the first hand-over of a window wakes the loop (a self-pipe write);
    the rest append under a lock. One wake-up of the loop per submit from the database thread
    cost about a third of a single submit's time (bench profile).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lock = threading.Lock()
        self.incoming: list[Task] = []  # guarded by lock
        self.wake_requested = False  # guarded by lock
        self.armed = False  # guarded by lock: a flush is due, the loop knows
        self.wakeup_scheduled = False
        self.last_wakeup = float("-inf")
        self.sending: set[asyncio.Future[None]] = set()

    def submit(self, snapshots: list[Task], wake: bool) -> None:
        """Any thread: queue these tasks' states (and a workers' wake-up) for the next flush."""
        with self.lock:
            self.incoming.extend(snapshots)
            self.wake_requested = self.wake_requested or wake
            if self.armed:
                return
            self.armed = True
        if _on_loop(self.loop):
            self._arm()
        else:
            self.loop.call_soon_threadsafe(self._arm)

    # The methods below run on self.loop only.
    def _arm(self) -> None:
        with self.lock:
            wake, self.wake_requested = self.wake_requested, False
        if wake:
            self.add_wakeup()
        self.loop.call_later(FLUSH_SECONDS, self._flush)

    def _flush(self) -> None:
        with self.lock:
            incoming, self.incoming = self.incoming, []
            wake, self.wake_requested = self.wake_requested, False
            self.armed = False
        if wake:
            self.add_wakeup()
        latest: dict[str, Task] = {}
        for snapshot in incoming:  # each task once, at its newest version
            current = latest.get(snapshot.id)
            if current is None or current.version <= snapshot.version:
                latest[snapshot.id] = snapshot
        if latest:
            # Built here, for the newest state only: a task claimed and finished within one
            # window costs one payload, not two (a tenth of a worker's time was payloads).
            self._start(send_updates([task_to_frame(task) for task in latest.values()]))

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
        self.wakeup_scheduled = False
        self.last_wakeup = self.loop.time()
        self._start(_safe_group_send(WORKERS_GROUP, {"type": "task.wakeup"}))

    def _start(self, coroutine: Any) -> None:
        sending = asyncio.ensure_future(coroutine)
        self.sending.add(sending)
        sending.add_done_callback(self.sending.discard)


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
        if payload["owner"] is not None:  # a task enqueued by code has no owner: staff only
            groups.setdefault(owner_group(payload["owner"]), []).append(payload)
        groups.setdefault(STAFF_GROUP, []).append(payload)
    return groups


async def _safe_group_send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(group, message)
    except (
        Exception
    ) as error:  # a hint only: the row is committed, the watcher or worker catches up
        _log_send_failure(group, error)


_FAILURE_LOG_SECONDS = 10.0
_last_failure_log = float("-inf")
_failures_since_log = 0


def _log_send_failure(group: str, error: Exception) -> None:
    """One warning (with its traceback) per ``_FAILURE_LOG_SECONDS``, counting the rest: during
    a Redis outage every send fails, and a traceback each would flood the log."""
    global _last_failure_log, _failures_since_log
    _failures_since_log += 1
    now = time.monotonic()
    if now - _last_failure_log < _FAILURE_LOG_SECONDS:
        return
    logger.warning(
        "channel layer send to %s failed (%d failed sends since the last warning): %r",
        group,
        _failures_since_log,
        error,
        exc_info=_failures_since_log == 1,
    )
    _last_failure_log, _failures_since_log = now, 0


async def send_updates(payloads: list[dict[str, Any]]) -> None:
    for group, tasks in _group_messages(payloads).items():
        await _safe_group_send(group, {"type": "task.updates", "tasks": tasks})


def publish_task_changes(tasks: Iterable[Task], *, wake: bool = False) -> None:
    """Tell watchers about these tasks' current state (and, with ``wake``, the workers that
    there is work). Thread-safe; call after commit."""
    hub = _live_hub()
    if hub is None:
        payloads = [task_to_frame(task) for task in tasks]
        if payloads:
            async_to_sync(send_updates)(payloads)
        if wake:
            async_to_sync(_safe_group_send)(WORKERS_GROUP, {"type": "task.wakeup"})
        return
    snapshots = [_snapshot(task) for task in tasks]
    if snapshots or wake:
        hub.submit(snapshots, wake)


def _snapshot(task: Task) -> Task:
    """The task as it is now, for a payload built later: a shallow copy of its fields, which
    are replaced, never changed in place, by the code that moves a task on."""
    copy = Task.__new__(Task)
    copy.__dict__.update(task.__dict__)
    return copy


def publish_task_deletions(deleted: Iterable[tuple[str, int]]) -> None:
    """Tell the watchers these tasks (``(id, owner_id)`` pairs) are gone: a
    ``{"type": "task.deleted", "id"}`` frame each. Call after commit."""

    async def send() -> None:
        for task_id, owner_id in deleted:
            message = {"type": "task.deleted", "id": task_id}
            groups = [STAFF_GROUP] if owner_id is None else [owner_group(owner_id), STAFF_GROUP]
            for group in groups:
                await _safe_group_send(group, message)

    hub = _live_hub()
    if hub is None:
        async_to_sync(send)()
    else:
        asyncio.run_coroutine_threadsafe(send(), hub.loop)


def wake_workers() -> None:
    """Tell the workers there is work. Thread-safe, coalesced; call after commit."""
    publish_task_changes((), wake=True)


def ask_workers_to_cancel(task_id: str) -> None:
    """Hint the worker running ``task_id`` to cancel it now rather than on its next tick."""
    send_hint(WORKERS_GROUP, {"type": "task.cancel", "id": task_id})


def send_hint(group: str, message: dict[str, Any]) -> None:
    """Send ``message`` to ``group`` from sync code, failures logged, never raised (a hint)."""
    hub = _live_hub()
    if hub is None:
        async_to_sync(_safe_group_send)(group, message)
    else:
        asyncio.run_coroutine_threadsafe(_safe_group_send(group, message), hub.loop)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
