"""The worker engine: its control (start, wake, cancel, stop) and its loop. One per worker
process. Each attempt is an ``Attempt`` (``tasks_app.attempt``); leases, heartbeat and reaper are
``tasks_app.leases``; every change of a task goes through ``tasks_app.services``.

The Channels consumer (``tasks_app.consumers.TaskWorkerConsumer``) only pokes it: a wake-up
message, a cancel hint. The engine also works on its own tick, so a lost message costs latency,
never a task. Each loop iteration is one database round trip that writes the finished attempts
and claims as many new tasks as there are free slots, in one transaction.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import socket
import time
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model

from tools_app.runner import ToolOwner

from . import limits, services
from .attempt import CANCELLED_BY_REQUEST, LEASE_LOST, SHUTDOWN, Attempt
from .db import run_in_db_thread
from .events import bind_event_loop
from .leases import Leases
from .logs import current_task_id
from .models import Task
from .renewal import Renewal
from .schedules import fire_due_schedules
from .store import Completion

logger = logging.getLogger(__name__)

PROGRESS_FLUSH_SECONDS = 0.25


def new_worker_id() -> str:
    return f"{socket.gethostname()[:30]}-{os.getpid()}-{secrets.token_hex(3)}"


class WorkerEngine:
    def __init__(
        self,
        worker_id: str | None = None,
        concurrency: int | None = None,
        tick_seconds: float | None = None,
        lease_seconds: float | None = None,
        queues: list[str] | None = None,
    ) -> None:
        self.worker_id = worker_id or new_worker_id()
        self.concurrency = concurrency or settings.CLAWSITE_WORKER_CONCURRENCY
        self.tick_seconds = tick_seconds or settings.CLAWSITE_WORKER_TICK_SECONDS
        self.lease = timedelta(seconds=lease_seconds or settings.CLAWSITE_LEASE_SECONDS)
        # The queues this worker claims from; empty: every queue.
        self.queues = list(settings.CLAWSITE_WORKER_QUEUES if queues is None else queues)
        self.leases = Leases(self.worker_id, self.lease)
        self.housekeeping_seconds = min(5.0, self.lease.total_seconds() / 3)
        self.running: dict[str, Attempt] = {}
        self.completions: list[Completion] = []
        self.owners: dict[int, ToolOwner] = {}
        self.claiming = True
        self.processed = 0
        self.claimed_total = 0
        self.renewal = Renewal()
        self._wakeup = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._last_housekeeping = 0.0
        self._last_progress_flush = 0.0
        self._last_schedules = 0.0
        self._stopped = asyncio.Event()
        # The limits on running work, as this worker's claims see them (tasks_app.limits).
        self.limiter = limits.WorkerLimits()
        self._token_timer: asyncio.TimerHandle | None = None

    # --- control -------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._loop_task is not None:
            return
        bind_event_loop()
        await run_in_db_thread(self.leases.heartbeat, 0)
        await run_in_db_thread(limits.seed_limits)
        self._loop_task = asyncio.create_task(self._main_loop(), name=f"worker {self.worker_id}")
        logger.info(
            "worker %s started, concurrency %d, queues %s",
            self.worker_id,
            self.concurrency,
            ",".join(self.queues) or "all",
        )

    def wake(self) -> None:
        self._wakeup.set()

    def cancel(self, task_id: str, reason: str = CANCELLED_BY_REQUEST) -> bool:
        """Cancel a task this worker runs; False when it runs no such task."""
        attempt = self.running.get(task_id)
        if attempt is None or attempt.future is None or attempt.future.done():
            return False
        attempt.cancel_reason = reason
        attempt.future.cancel()
        return True

    async def stop(self, grace_seconds: float | None = None) -> None:
        """Stop claiming; let running tasks finish within the grace period; requeue the rest.

        A requeued attempt does not count against the task's budget (its ``max_attempts`` grows
        by one): the task did not fail, its worker stopped. A worker that dies without this
        (SIGKILL, a second signal, a crash) leaves its tasks to the reaper, which does count
        the attempt, so a task that kills its worker every time still ends.
        """
        self.claiming = False
        grace = settings.CLAWSITE_WORKER_GRACE_SECONDS if grace_seconds is None else grace_seconds
        futures = [a.future for a in self.running.values() if a.future is not None]
        if futures:
            await asyncio.wait(futures, timeout=grace)
        # Stop the loop before cancelling, so that a claim already under way cannot start a
        # task behind our back; its tasks are cancelled (and requeued) below like the others.
        self._stopped.set()
        self._wakeup.set()
        if self._loop_task is not None:
            await self._loop_task
        for task_id in list(self.running):
            self.cancel(task_id, reason=SHUTDOWN)
        futures = [a.future for a in self.running.values() if a.future is not None]
        if futures:
            await asyncio.wait(futures, timeout=5)
        await run_in_db_thread(self._final_flush)
        # Written, or (a tool that ignored its cancellation) left to the reaper.
        self.running.clear()

    # --- the loop ------------------------------------------------------------------------------------

    async def _main_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                await asyncio.wait_for(self._wakeup.wait(), self.tick_seconds)
            except TimeoutError:
                pass
            self._wakeup.clear()
            if self._stopped.is_set():
                break
            try:
                await self._cycle()
                if time.monotonic() - self._last_housekeeping >= self.housekeeping_seconds:
                    await self._housekeeping()
                if (
                    time.monotonic() - self._last_schedules
                    >= settings.CLAWSITE_SCHEDULE_CHECK_SECONDS
                ):
                    self._last_schedules = time.monotonic()
                    await run_in_db_thread(fire_due_schedules)
            except Exception:
                # Database or Redis away: the rows are the truth, so wait and try again.
                logger.exception("worker cycle failed; retrying")
                await asyncio.sleep(min(self.tick_seconds, 1.0))

    async def _cycle(self) -> None:
        completions, self.completions = self.completions, []
        # A finished task frees its slot now, though its row is written below: the same round
        # trip that writes it claims its successor.
        for completion in completions:
            # Only the entry of this very attempt: the same task may have been claimed again.
            attempt = self.running.get(completion.task.id)
            if attempt is not None and attempt.task is completion.task:
                del self.running[completion.task.id]
        progress = self._take_dirty_progress()
        # Tasks whose completion this cycle writes are done running: their slots are free now.
        # (Counted as busy, a worker whose tools finish at once claimed nothing on every other
        # cycle and then slept a whole tick: ~300 tasks/s in the bench instead of thousands.)
        finishing = sum(1 for completion in completions if completion.task.id in self.running)
        free = self.concurrency - len(self.running) + finishing if self.claiming else 0
        if (left := self.renewal.claims_left(self.claimed_total)) is not None:
            free = min(free, left)
        try:
            claimed = await run_in_db_thread(self._finish_and_claim, completions, progress, free)
        except BaseException:
            self.completions[:0] = completions  # written next time, never dropped
            raise
        self.processed += len(completions)
        self.claimed_total += len(claimed)
        if self.renewal.check_tasks(self.claimed_total):
            self.claiming = False
        if self.limiter.token_wait is not None:
            self._wake_at_next_token(self.limiter.token_wait)
        for task in claimed:
            attempt = Attempt(task)
            self.running[task.id] = attempt
            if task.cancel_requested:
                # Cancelled while its last worker was lost or stopping: never run it again.
                attempt.cancel_reason = CANCELLED_BY_REQUEST
                self._end(attempt, attempt.cancelled())
                continue
            # Eager: the task runs at once, up to its first real wait; a tool that answers
            # without waiting (a cache hit, a stat) finishes here, with no trip through the loop.
            attempt.future = asyncio.eager_task_factory(
                asyncio.get_running_loop(), self._run(attempt)
            )
            attempt.future.add_done_callback(functools.partial(self._on_done, attempt))
        if claimed and len(claimed) == free:
            self._wakeup.set()  # there may be more waiting

    def _finish_and_claim(
        self, completions: list[Completion], progress: list[Task], free: int
    ) -> list[Task]:
        """On a database thread: one round trip of the loop, and the claimed tasks' owners."""
        _, claimed = services.finish_and_claim(
            self.worker_id, completions, progress, free, self.lease, self.queues, self.limiter
        )
        self._load_owners({t.owner_id for t in claimed if t.owner_id is not None})
        return claimed

    def _wake_at_next_token(self, seconds: float) -> None:
        """A rate holds tasks back until its bucket has a token: claim again then, rather than
        at the next tick."""
        if seconds >= self.tick_seconds:
            return
        if self._token_timer is not None:
            self._token_timer.cancel()
        self._token_timer = asyncio.get_running_loop().call_later(seconds + 0.001, self._wakeup.set)

    def _load_owners(self, owner_ids: set[int]) -> None:
        missing = owner_ids - self.owners.keys()
        if missing:
            users = get_user_model().objects.filter(id__in=missing)
            for user in users.only("id", "username", "is_staff"):
                self.owners[user.id] = ToolOwner(user.id, user.get_username(), user.is_staff)

    # --- one attempt --------------------------------------------------------------------------------

    async def _run(self, attempt: Attempt) -> None:
        current_task_id.set(attempt.task.id)  # its logs carry its id (tasks_app.logs)
        owner_id = attempt.task.owner_id  # None: a Django task, enqueued by code
        owner = None if owner_id is None else self.owners.get(owner_id)
        self._end(attempt, await attempt.run(owner, functools.partial(self._progress, attempt)))

    def _end(self, attempt: Attempt, completion: Completion | None) -> None:
        """An attempt is over: its end is written on the next cycle (None: not ours to write)."""
        if completion is None:
            if self.running.get(attempt.task.id) is attempt:
                del self.running[attempt.task.id]
            return
        self.completions.append(completion)
        self._wakeup.set()

    def _on_done(self, attempt: Attempt, future: asyncio.Task[None]) -> None:
        # A task cancelled before its first step never enters Attempt.run's try block: its end
        # is recorded here, or the row would stay running until the reaper took it back.
        if future.cancelled():
            self._end(attempt, attempt.cancelled())

    def _progress(
        self, attempt: Attempt, done: int | None, total: int | None, message: str
    ) -> None:
        attempt.report_progress(done, total, message)
        if time.monotonic() - self._last_progress_flush >= PROGRESS_FLUSH_SECONDS:
            self._wakeup.set()

    def _take_dirty_progress(self) -> list[Task]:
        dirty = []
        for attempt in self.running.values():
            if attempt.progress_dirty and not (attempt.future and attempt.future.done()):
                attempt.progress_dirty = False
                attempt.task.version += 1
                dirty.append(attempt.task)
        if dirty:
            self._last_progress_flush = time.monotonic()
        return dirty

    # --- leases, heartbeat, reaper (tasks_app.leases) ---------------------------------------------

    async def _housekeeping(self) -> None:
        self._last_housekeeping = time.monotonic()
        if self.renewal.check_memory():
            self.claiming = False
        running = {
            task_id: attempt.task.attempts
            for task_id, attempt in self.running.items()
            if attempt.is_running
        }
        cancel_ids, lost_ids, reaped = await run_in_db_thread(self.leases.renew_and_reap, running)
        for task_id in cancel_ids:
            self.cancel(task_id)
        for task_id in lost_ids:
            logger.warning("task %s: lease lost, stopping this attempt", task_id)
            self.cancel(task_id, reason=LEASE_LOST)
        if reaped:
            self._wakeup.set()

    def _final_flush(self) -> None:
        completions, self.completions = self.completions, []
        services.finish_attempts(self.worker_id, completions)
        self.leases.forget()


_engine: WorkerEngine | None = None


def get_engine() -> WorkerEngine:
    """This process's engine (created on first use, by the worker consumer)."""
    global _engine
    if _engine is None:
        _engine = WorkerEngine()
    return _engine
