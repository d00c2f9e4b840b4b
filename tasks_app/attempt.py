"""One attempt of a task on a worker: run its tool under the task's timeout, and say how it ended.

The attempt only decides (a ``Completion``: succeeded, failed, cancelled, or queued again); the
engine (``tasks_app.worker``) hands its end to ``services.finish_attempts`` with the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from django.conf import settings
from django.utils import timezone

from tools_app.errors import ToolError
from tools_app.runner import ToolOwner, run_tool

from . import audit, safejson
from .audit import AUDITED_TOOLS
from .db import run_in_db_thread
from .django_tasks import DJANGO_TASK_TOOL, run_django_task
from .models import Task, TaskStatus
from .retry import backoff, status_after_failure
from .store import Completion

logger = logging.getLogger(__name__)

# Reasons for cancelling a running attempt that are not a user's request.
SHUTDOWN = "shutdown"
LEASE_LOST = "lease lost"
CANCELLED_BY_REQUEST = "Cancelled by request."


class Attempt:
    """A claimed task and the asyncio task running it."""

    __slots__ = ("cancel_reason", "future", "progress_dirty", "started", "task")

    def __init__(self, task: Task, future: asyncio.Task[None] | None = None) -> None:
        self.task = task
        self.future = future
        self.cancel_reason: str | None = None
        self.progress_dirty = False
        self.started: float | None = None  # perf_counter() when the tool started

    @property
    def is_running(self) -> bool:
        return self.future is not None and not self.future.done()

    async def run(self, owner: ToolOwner | None, report_progress: Any) -> Completion | None:
        """Run the tool, or the Django task's function (no owner: enqueued by code); the
        attempt's end (None: cancelled because its lease was lost)."""
        task = self.task
        self.started = time.perf_counter()
        completion = Completion(task=task, status=TaskStatus.SUCCEEDED)
        if task.tool == DJANGO_TASK_TOOL:
            running = run_django_task(task)
        else:
            assert owner is not None  # noqa: S101 (for the type checker: every tool task has one)
            running = run_tool(
                task.tool, task.args, owner, timeout=task.timeout, report_progress=report_progress
            )
        try:
            outcome = await asyncio.wait_for(running, timeout=task.timeout)
            # Checked here, where only this task can fail: a result the store cannot hold
            # would otherwise break the completion batch it is written with.
            safejson.check_result(outcome.result, settings.CLAWSITE_MAX_RESULT_BYTES)
            completion.result, completion.cache_hit = outcome.result, outcome.cache_hit
        except safejson.UnsafeJSON as problem:
            self._fail(
                completion,
                ToolError("invalid_result", f"The tool's result cannot be stored: {problem}."),
            )
        except asyncio.CancelledError:
            return self.cancelled()
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
        if task.tool in AUDITED_TOOLS:
            await self._audit(owner, completion)
        return self._timed(completion)

    async def _audit(self, owner: ToolOwner | None, completion: Completion) -> None:
        """Every execution of a tool that reaches outside the process, in the audit log."""
        task = self.task
        outcome = (completion.error or {}).get("type", "ok")
        try:
            await run_in_db_thread(
                audit.record, owner, f"tool.{task.tool}", task.id, task.args, outcome
            )
        except Exception:  # the log must not cost the task its result; say so loudly
            logger.exception("task %s: the audit event could not be written", task.id)

    def cancelled(self) -> Completion | None:
        """The end of a cancelled attempt, by why it was cancelled; None when the row is no longer
        this attempt's to write (its lease was lost: another worker owns the task now, and the
        fenced write would be refused anyway)."""
        task = self.task
        if self.cancel_reason == LEASE_LOST:
            return None
        completion = Completion(task=task, status=TaskStatus.CANCELLED)
        if self.cancel_reason == SHUTDOWN:
            # Back to the queue. The attempt started but never failed, so it must not use up
            # the task's budget: max_attempts grows by one (attempts still counts every
            # execution started, as the contract says).
            completion.status = TaskStatus.QUEUED
            completion.max_attempts = task.max_attempts + 1
            completion.error = {"type": "worker_shutdown", "message": "The worker stopped."}
        else:
            completion.error = {"type": "cancelled", "message": self.cancel_reason or "Cancelled."}
        return self._timed(completion)

    def _timed(self, completion: Completion) -> Completion:
        completion.finished_at = timezone.now()
        completion.duration_ms = (
            0.0 if self.started is None else (time.perf_counter() - self.started) * 1000
        )
        return completion

    @staticmethod
    def _fail(completion: Completion, error: ToolError) -> None:
        task = completion.task
        # Messages may quote the input (a file name, an exception's text): keep them storable.
        completion.error = {
            key: safejson.storable_text(value) if isinstance(value, str) else value
            for key, value in error.as_dict().items()
        }
        completion.status = status_after_failure(task, retryable=error.retryable)
        if completion.status == TaskStatus.QUEUED:
            completion.run_after = timezone.now() + backoff(task.attempts)

    def report_progress(self, done: int | None, total: int | None, message: str) -> None:
        self.task.progress = {"done": done, "total": total, "message": message}
        self.progress_dirty = True
