"""Channels consumers: the worker's (a thin shell around the engine) and the watchers'."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

from channels.consumer import AsyncConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from . import safejson
from .db import run_in_db_thread
from .events import STAFF_GROUP, WORKERS_GROUP, owner_group
from .models import Task
from .safejson import is_storable_text
from .serializers import task_to_frame
from .stats import get_stats
from .worker import get_engine
from .ws_access import AccessCheckedMixin

logger = logging.getLogger(__name__)

MAX_TRACKED_VERSIONS = 10_000
STATS_INTERVAL_SECONDS = 1.0


class TaskWorkerConsumer(AsyncConsumer):
    """Runs on the ``tasks`` channel under ``manage.py runworker tasks``.

    ``worker.start`` (sent by the process itself at start-up) starts the engine and joins the
    workers' group, so every worker process gets the wake-ups; the engine does the rest.
    """

    async def worker_start(self, message: dict[str, Any]) -> None:
        await get_engine().start()
        await self.channel_layer.group_add(WORKERS_GROUP, self.channel_name)

    async def task_wakeup(self, message: dict[str, Any]) -> None:
        get_engine().wake()

    async def task_cancel(self, message: dict[str, Any]) -> None:
        get_engine().cancel(message["id"])


class _JsonSocket(AsyncJsonWebsocketConsumer):
    """A watcher's socket: clients need not send anything, and what they send is parsed as
    the API parses bodies. Junk (not JSON, too deep) is answered with an error frame, and the
    socket stays open (Channels' own decoding raised, closing it with 1011)."""

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        try:
            content = safejson.loads(text_data if text_data is not None else bytes_data or b"")
        except ValueError as exc:  # UnicodeDecodeError and UnsafeJSON included
            await self.send_json(
                {"type": "error", "error": {"code": "invalid_json", "message": str(exc)[:200]}}
            )
            return
        await self.receive_json(content, **kwargs)


class TaskUpdatesConsumer(AccessCheckedMixin, _JsonSocket):
    """``/ws/tasks/``: every change of the user's tasks (staff: of all tasks)."""

    task_id: str | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close()  # before accept: the handshake is refused with 403
            return
        self.versions: OrderedDict[str, int] = OrderedDict()
        self.group = await self.group_for(user)
        if self.group is None:
            await self.close()
            return
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.watch_access()
        await self.send_initial_state()

    async def group_for(self, user: Any) -> str | None:
        return STAFF_GROUP if user.is_staff else owner_group(user.id)

    async def send_initial_state(self) -> None:
        pass

    async def disconnect(self, code: int) -> None:
        await self.unwatch_access()
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    def is_newer(self, task: dict[str, Any]) -> bool:
        """Frames never take a task's ``version`` back, whatever order they arrive in."""
        if self.task_id is not None and task["id"] != self.task_id:
            return False
        seen = self.versions.get(task["id"], 0)
        if task["version"] <= seen:  # an older state, or one this socket already sent
            return False
        self.versions[task["id"]] = task["version"]
        self.versions.move_to_end(task["id"])
        if len(self.versions) > MAX_TRACKED_VERSIONS:
            self.versions.popitem(last=False)
        return True

    async def task_updates(self, message: dict[str, Any]) -> None:
        fresh = [task for task in message["tasks"] if self.is_newer(task)]
        if len(fresh) == 1:
            await self.send_json({"type": "task.update", "task": fresh[0]})
        elif fresh:
            await self.send_json({"type": "task.updates", "tasks": fresh})

    async def task_deleted(self, message: dict[str, Any]) -> None:
        if self.task_id is None or message["id"] == self.task_id:
            self.versions.pop(message["id"], None)
            await self.send_json({"type": "task.deleted", "id": message["id"]})


class TaskDetailConsumer(TaskUpdatesConsumer):
    """``/ws/tasks/<id>/``: one task; first its current state, then its changes."""

    async def group_for(self, user: Any) -> str | None:
        self.task_id = self.scope["url_route"]["kwargs"]["task_id"]
        if not is_storable_text(self.task_id):
            return None
        task = await run_in_db_thread(
            lambda: Task.objects.visible_to(user).filter(pk=self.task_id).first()
        )
        if task is None:
            return None
        self.initial = task_to_frame(task)
        # A task enqueued by code has no owner: its changes go to the staff group only.
        return STAFF_GROUP if task.owner_id is None else owner_group(task.owner_id)

    async def send_initial_state(self) -> None:
        self.is_newer(self.initial)
        await self.send_json({"type": "task.update", "task": self.initial})


class StatsConsumer(AccessCheckedMixin, _JsonSocket):
    """``/ws/stats/`` (staff): ``{"type": "stats", ...get_stats()...}`` every
    ``STATS_INTERVAL_SECONDS``. One broadcaster per process computes the numbers once per
    interval for every open dashboard, so ten dashboards cost what one does."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_staff:
            await self.close()  # before accept: the handshake is refused with 403
            return
        await self.accept()
        await self.watch_access()
        await stats_broadcaster.join(self)

    async def disconnect(self, code: int) -> None:
        await self.unwatch_access()
        stats_broadcaster.leave(self)


class _StatsBroadcaster:
    def __init__(self) -> None:
        self.watchers: set[StatsConsumer] = set()
        self.loop_task: asyncio.Task[None] | None = None
        self.last: dict[str, Any] | None = None

    async def join(self, consumer: StatsConsumer) -> None:
        self.watchers.add(consumer)
        if self.last is not None:
            await consumer.send_json(self.last)  # at once, not one interval later
        # A new event loop (a test's) starts its own broadcaster.
        if (
            self.loop_task is None
            or self.loop_task.done()
            or self.loop_task.get_loop() is not asyncio.get_running_loop()
        ):
            self.loop_task = asyncio.create_task(self._run())

    def leave(self, consumer: StatsConsumer) -> None:
        self.watchers.discard(consumer)

    async def _run(self) -> None:
        while self.watchers:
            try:
                stats = await run_in_db_thread(get_stats)
                self.last = {"type": "stats", **stats}
                for consumer in list(self.watchers):
                    try:
                        await consumer.send_json(self.last)
                    except Exception:  # a socket that just closed: its disconnect follows
                        self.watchers.discard(consumer)
            except Exception:
                logger.warning("stats broadcast failed; retrying", exc_info=True)
            await asyncio.sleep(STATS_INTERVAL_SECONDS)
        self.last = None


stats_broadcaster = _StatsBroadcaster()
