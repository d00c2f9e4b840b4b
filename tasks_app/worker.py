"""The worker engine: claim, run, finish, renew, reap. One per worker process.

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
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from tools_app.errors import ToolError
from tools_app.runner import ToolOwner, run_tool

from . import store
from .db import run_in_db_thread, write_lock
from .events import bind_event_loop, publish_task_changes
from .logs import current_task_id
from .metrics import record_finished
from .models import Task, TaskStatus, WorkerHeartbeat
from .retry import backoff
from .store import Completion

logger = logging.getLogger(__name__)

PROGRESS_FLUSH_SECONDS = 0.25
# Reasons for cancelling a running attempt that are not a user's request.
SHUTDOWN = "shutdown"
LEASE_LOST = "lease lost"


def new_worker_id() -> str:
    return f"{socket.gethostname()[:30]}-{os.getpid()}-{secrets.token_hex(3)}"


class _Running:
    """A claimed task and the asyncio task running it."""

    __slots__ = ("cancel_reason", "future", "progress_dirty", "task")

    def __init__(self, task: Task, future: asyncio.Task[None] | None = None) -> None:
        self.task = task
        self.future = future
        self.cancel_reason: str | None = None
        self.progress_dirty = False


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
        self.housekeeping_seconds = min(5.0, self.lease.total_seconds() / 3)
        self.running: dict[str, _Running] = {}
        self.completions: list[Completion] = []
        self.owners: dict[int, ToolOwner] = {}
        self.claiming = True
        self.processed = 0
        self._wakeup = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._last_housekeeping = 0.0
        self._last_progress_flush = 0.0
        self._stopped = asyncio.Event()

    # --- control -------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._loop_task is not None:
            return
        bind_event_loop()
        await run_in_db_thread(self._heartbeat)
        self._loop_task = asyncio.create_task(self._main_loop(), name=f"worker {self.worker_id}")
        logger.info(
            "worker %s started, concurrency %d, queues %s",
            self.worker_id,
            self.concurrency,
            ",".join(self.queues) or "all",
        )

    def wake(self) -> None:
        self._wakeup.set()

    def cancel(self, task_id: str, reason: str = "Cancelled by request.") -> bool:
        """Cancel a task this worker runs; False when it runs no such task."""
        entry = self.running.get(task_id)
        if entry is None or entry.future is None or entry.future.done():
            return False
        entry.cancel_reason = reason
        entry.future.cancel()
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
        futures = [e.future for e in self.running.values() if e.future is not None]
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
        futures = [e.future for e in self.running.values() if e.future is not None]
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
            entry = self.running.get(completion.task.id)
            if entry is not None and entry.task is completion.task:
                del self.running[completion.task.id]
        progress = self._take_dirty_progress()
        # Tasks whose completion this cycle writes are done running: their slots are free now.
        # (Counted as busy, a worker whose tools finish at once claimed nothing on every other
        # cycle and then slept a whole tick: ~300 tasks/s in the bench instead of thousands.)
        finishing = sum(1 for completion in completions if completion.task.id in self.running)
        free = self.concurrency - len(self.running) + finishing if self.claiming else 0
        try:
            written, claimed = await run_in_db_thread(
                self._write_and_claim, completions, progress, free
            )
        except BaseException:
            self.completions[:0] = completions  # written next time, never dropped
            raise
        self.processed += len(completions)
        changed = written + claimed
        if changed:
            publish_task_changes(changed)
        for task in claimed:
            entry = _Running(task)
            self.running[task.id] = entry
            if task.cancel_requested:
                # Cancelled while its last worker was lost or stopping: never run it again.
                entry.cancel_reason = "Cancelled by request."
                self._record_cancelled(entry, None)
                continue
            # Eager: the task runs at once, up to its first real wait; a tool that answers
            # without waiting (a cache hit, a stat) finishes here, with no trip through the loop.
            entry.future = asyncio.eager_task_factory(asyncio.get_running_loop(), self._run(entry))
            entry.future.add_done_callback(functools.partial(self._on_done, entry))
        if claimed and len(claimed) == free:
            self._wakeup.set()  # there may be more waiting

    def _write_and_claim(
        self, completions: list[Completion], progress: list[Task], free: int
    ) -> tuple[list[Task], list[Task]]:
        with write_lock(), transaction.atomic():
            written = store.complete_tasks(self.worker_id, completions)
            store.record_progress(self.worker_id, progress)
            claimed = (
                store.claim_runnable_tasks(
                    self.worker_id, free, timezone.now(), self.lease, self.queues
                )
                if free > 0
                else []
            )
        record_finished(written)  # after commit; on this database thread, off the event loop
        self._load_owners({t.owner_id for t in claimed})
        return written, claimed

    def _load_owners(self, owner_ids: set[int]) -> None:
        missing = owner_ids - self.owners.keys()
        if missing:
            users = get_user_model().objects.filter(id__in=missing)
            for user in users.only("id", "username", "is_staff"):
                self.owners[user.id] = ToolOwner(user.id, user.get_username(), user.is_staff)

    # --- one task ------------------------------------------------------------------------------------

    async def _run(self, entry: _Running) -> None:
        task = entry.task
        current_task_id.set(task.id)  # this asyncio task's logs carry its id (tasks_app.logs)
        started = time.perf_counter()
        completion = Completion(task=task, status=TaskStatus.SUCCEEDED)
        try:
            outcome = await asyncio.wait_for(
                run_tool(
                    task.tool,
                    task.args,
                    self.owners[task.owner_id],
                    timeout=task.timeout,
                    report_progress=lambda done, total, message: self._progress(
                        entry, done, total, message
                    ),
                ),
                timeout=task.timeout,
            )
            completion.result, completion.cache_hit = outcome.result, outcome.cache_hit
        except asyncio.CancelledError:
            self._record_cancelled(entry, started)
            return
        except TimeoutError:
            self._fail(
                completion,
                ToolError("timeout", f"Timed out after {task.timeout:g} s.", retryable=True),
            )
        except ToolError as error:
            self._fail(completion, error)
        except Exception as error:
            logger.exception("task %s: tool %s raised", task.id, task.tool)
            self._fail(completion, ToolError("internal_error", f"{type(error).__name__}: {error}"))
        self._record(completion, started)

    def _record(self, completion: Completion, started: float | None) -> None:
        completion.finished_at = timezone.now()
        completion.duration_ms = 0.0 if started is None else (time.perf_counter() - started) * 1000
        self.completions.append(completion)
        self._wakeup.set()

    def _record_cancelled(self, entry: _Running, started: float | None) -> None:
        """The end of a cancelled attempt, by why it was cancelled."""
        task = entry.task
        if entry.cancel_reason == LEASE_LOST:
            # Another worker owns the task now (or it was cancelled): its row is not ours to
            # write, and the fenced write would be refused anyway.
            if self.running.get(task.id) is entry:
                del self.running[task.id]
            return
        completion = Completion(task=task, status=TaskStatus.CANCELLED)
        if entry.cancel_reason == SHUTDOWN:
            # Back to the queue. The attempt started but never failed, so it must not use up
            # the task's budget: max_attempts grows by one (attempts still counts every
            # execution started, as the contract says).
            completion.status = TaskStatus.QUEUED
            completion.max_attempts = task.max_attempts + 1
            completion.error = {"type": "worker_shutdown", "message": "The worker stopped."}
        else:
            completion.error = {"type": "cancelled", "message": entry.cancel_reason or "Cancelled."}
        self._record(completion, started)

    def _on_done(self, entry: _Running, future: asyncio.Task[None]) -> None:
        # A task cancelled before its first step never enters _run's try block: its end is
        # recorded here, or the row would stay running until the reaper took it back.
        if future.cancelled():
            self._record_cancelled(entry, None)

    def _fail(self, completion: Completion, error: ToolError) -> None:
        task = completion.task
        completion.error = error.as_dict()
        if error.retryable and task.attempts < task.max_attempts:
            completion.status = TaskStatus.QUEUED
            completion.run_after = timezone.now() + backoff(task.attempts)
        else:
            completion.status = TaskStatus.FAILED

    def _progress(self, entry: _Running, done: int | None, total: int | None, message: str) -> None:
        entry.task.progress = {"done": done, "total": total, "message": message}
        entry.progress_dirty = True
        if time.monotonic() - self._last_progress_flush >= PROGRESS_FLUSH_SECONDS:
            self._wakeup.set()

    def _take_dirty_progress(self) -> list[Task]:
        dirty = []
        for entry in self.running.values():
            if entry.progress_dirty and not (entry.future and entry.future.done()):
                entry.progress_dirty = False
                entry.task.version += 1
                dirty.append(entry.task)
        if dirty:
            self._last_progress_flush = time.monotonic()
        return dirty

    # --- leases, heartbeat, reaper ---------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        self._last_housekeeping = time.monotonic()
        running = {
            task_id: entry.task.attempts
            for task_id, entry in self.running.items()
            if entry.future is not None and not entry.future.done()
        }
        cancel_ids, lost_ids, reaped = await run_in_db_thread(self._renew_and_reap, running)
        for task_id in cancel_ids:
            self.cancel(task_id)
        for task_id in lost_ids:
            logger.warning("task %s: lease lost, stopping this attempt", task_id)
            self.cancel(task_id, reason=LEASE_LOST)
        if reaped:
            publish_task_changes(reaped)
            self._wakeup.set()

    def _heartbeat(self) -> None:
        WorkerHeartbeat.objects.update_or_create(
            worker_id=self.worker_id,
            defaults={
                "hostname": socket.gethostname()[:255],
                "pid": os.getpid(),
                "last_heartbeat": timezone.now(),
                "running": len(self.running),
            },
        )

    def _renew_and_reap(self, running: dict[str, int]) -> tuple[list[str], list[str], list[Task]]:
        """Renew the leases of the attempts this worker runs; return those to cancel (asked by a
        user), those no longer ours (the lease expired and the reaper gave the task away: the
        attempt must stop, lest two workers run the task), and the tasks reaped."""
        now = timezone.now()
        self._heartbeat()
        cancel_ids: list[str] = []
        lost_ids: list[str] = []
        if running:
            with transaction.atomic():
                mine = Task.objects.filter(
                    id__in=list(running), worker_id=self.worker_id, status=TaskStatus.RUNNING
                )
                mine.update(lease_expires_at=now + self.lease)
                rows = {
                    task_id: (attempts, cancel_requested)
                    for task_id, attempts, cancel_requested in mine.values_list(
                        "id", "attempts", "cancel_requested"
                    )
                }
            for task_id, attempts in running.items():
                row = rows.get(task_id)
                if row is None or row[0] != attempts:
                    lost_ids.append(task_id)
                elif row[1]:
                    cancel_ids.append(task_id)
        with transaction.atomic():
            reaped = reap_expired_leases(now)
        return cancel_ids, lost_ids, reaped

    def _final_flush(self) -> None:
        completions, self.completions = self.completions, []
        written = store.complete_tasks(self.worker_id, completions)
        if written:
            publish_task_changes(written)
        WorkerHeartbeat.objects.filter(worker_id=self.worker_id).delete()


def reap_expired_leases(now: Any, limit: int = 500) -> list[Task]:
    """Tasks whose worker stopped renewing: back to ``queued``, or ``failed`` as lost when their
    attempts are spent. Each row is changed only if it is still the expired attempt we read."""
    expired = list(
        Task.objects.running().filter(lease_expires_at__lt=now).order_by("lease_expires_at")[:limit]
    )
    changed = []
    for task in expired:
        if task.cancel_requested:
            status = TaskStatus.CANCELLED
            error = {"type": "cancelled", "message": "Cancelled by request (its worker was lost)."}
        else:
            # The lost attempt counts: a task that kills its worker every time must end.
            status = TaskStatus.QUEUED if task.attempts < task.max_attempts else TaskStatus.FAILED
            error = {
                "type": "lost",
                "message": f"Worker {task.worker_id} stopped renewing its lease.",
            }
        completion = Completion(task=task, status=status, error=error, finished_at=now)
        changed.extend(store.complete_tasks(task.worker_id, [completion]))
    return changed


_engine: WorkerEngine | None = None


def get_engine() -> WorkerEngine:
    """This process's engine (created on first use, by the worker consumer)."""
    global _engine
    if _engine is None:
        _engine = WorkerEngine()
    return _engine
