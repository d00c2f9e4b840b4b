"""Django tasks as ClawSite tasks: their rows, their results, and how a worker runs them.

A Django task is a task with ``tool`` ``django_task`` and ``args``
``{"task": "<module path>", "args": [...], "kwargs": {...}}``; it succeeds with
``{"return_value": ...}``, and an exception fails its attempt with an error carrying
``exception_class_path`` and ``traceback``. Only code enqueues one (the backend,
``tasks_app.backends``): it is not a tool of the registry, so no API caller can name a function
for a worker to import and run.

Sync functions run on a bounded pool of threads (``CLAWSITE_WORKER_THREADS``), each task with
database connections of its own, closed when it ends (a long-lived worker never keeps a broken
one); async functions run on the worker's event loop. A timed-out or cancelled sync function
cannot be stopped: its thread runs on, but what it returns is dropped, and it sends no signal.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import queue
import threading
import traceback
from concurrent.futures import Executor, Future
from datetime import datetime
from inspect import iscoroutinefunction
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.dispatch import Signal
from django.tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
from django.tasks.exceptions import TaskResultDoesNotExist
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils import timezone
from django.utils.module_loading import import_string

from tools_app.errors import ToolError
from tools_app.runner import ToolOutcome

from . import store
from .backends import ClawSiteBackend, json_round_trip
from .models import DJANGO_TASK_TOOL, TaskSource, TaskStatus
from .models import Task as TaskRow

# Lost attempts (the worker died) after which a Django task with no attempt left fails.
LOST_RERUNS = 2

STATUSES = {
    TaskStatus.QUEUED: TaskResultStatus.READY,
    TaskStatus.RUNNING: TaskResultStatus.RUNNING,
    TaskStatus.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    TaskStatus.FAILED: TaskResultStatus.FAILED,
    TaskStatus.CANCELLED: TaskResultStatus.FAILED,
}


class TaskAttemptFailed(Exception):
    """Stands for a failed attempt that raised nothing (a timeout, a lost worker) in
    ``TaskResult.errors``, whose entries name an exception class."""


# The exception class each kind of failure is reported as, when the function raised nothing.
_ERROR_CLASSES = {"timeout": "builtins.TimeoutError", "cancelled": "asyncio.CancelledError"}
_NOT_FAILURES = {"worker_shutdown"}  # the worker stopped: requeued, not a failed attempt


class TaskFunctionError(ToolError):
    """What a task function raised, as the attempt's error."""

    def __init__(self, error: BaseException) -> None:
        cls = type(error)
        super().__init__("exception", str(error) or cls.__name__, retryable=True)
        self.exception_class_path = f"{cls.__module__}.{cls.__qualname__}"
        self.traceback = "".join(traceback.format_exception(error))

    def as_dict(self) -> dict[str, str]:
        return {
            **super().as_dict(),
            "exception_class_path": self.exception_class_path,
            "traceback": self.traceback,
        }


# --- enqueue and results (any process) ----------------------------------------------------------


def enqueue(task: Task, args: list[Any], kwargs: dict[str, Any], backend: Any) -> TaskResult:
    """Insert the task's row: in the caller's transaction, or in one of its own."""
    row = store.new_task(
        owner_id=None,
        tool=DJANGO_TASK_TOOL,
        args={"task": task.module_path, "args": args, "kwargs": kwargs},
        queue=task.queue_name,
        priority=task.priority,
        run_after=task.run_after,
        max_attempts=getattr(task, "max_attempts", 1),
        timeout=getattr(task, "timeout", None) or settings.CLAWSITE_DJANGO_TASK_TIMEOUT,
        source=TaskSource.DJANGO,
    )
    result = task_result(row, task, backend.alias)

    from .services import enqueue_tasks  # services imports this module

    enqueue_tasks([row])
    transaction.on_commit(lambda: task_enqueued.send(type(backend), task_result=result))
    return result


@functools.lru_cache(maxsize=1024)
def load_task(path: str) -> Task:
    """The ``@task`` object at ``path``: ValueError when there is none. Kept once found: a
    worker runs the same few functions thousands of times."""
    try:
        found = import_string(path)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"Expected {path!r} to point to a Task instance.") from error
    if not isinstance(found, Task):
        raise ValueError(f"Expected {path!r} to point to a Task instance.")
    return found


def get_result(result_id: str, backend: ClawSiteBackend) -> TaskResult:
    row = store.fetch_task(str(result_id))
    if row is None or row.tool != DJANGO_TASK_TOOL:
        raise TaskResultDoesNotExist(result_id)
    task = load_task(row.args["task"]).using(
        priority=row.priority, queue_name=row.queue, run_after=row.run_after
    )
    return task_result(row, task, backend.alias)


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _task_error(error: dict[str, Any]) -> TaskError:
    path = error.get("exception_class_path") or _ERROR_CLASSES.get(
        error.get("type", ""), f"{__name__}.TaskAttemptFailed"
    )
    message = f"{error.get('type')}: {error.get('message')}"
    return TaskError(exception_class_path=path, traceback=error.get("traceback") or message)


def task_result(row: TaskRow, task: Task, alias: str) -> TaskResult:
    """The row as Django's ``TaskResult``: one worker id per attempt started, one error per
    failed attempt, in order."""
    log = row.attempt_log
    worker_ids = [entry["worker_id"] for entry in log]
    if row.status == TaskStatus.RUNNING:
        worker_ids.append(row.worker_id)
    result: TaskResult[Any, Any] = TaskResult(
        task=task,
        id=row.id,
        status=STATUSES[TaskStatus(row.status)],
        enqueued_at=row.created_at,
        started_at=_time(log[0]["started_at"]) if log else row.started_at,
        finished_at=row.finished_at if row.is_terminal else None,
        last_attempted_at=row.started_at,
        args=row.args["args"],
        kwargs=row.args["kwargs"],
        backend=alias,
        errors=[
            _task_error(entry["error"])
            for entry in log
            if entry.get("error") and entry["error"].get("type") not in _NOT_FAILURES
        ],
        worker_ids=worker_ids,
    )
    if row.status == TaskStatus.SUCCEEDED and isinstance(row.result, dict):
        object.__setattr__(result, "_return_value", row.result.get("return_value"))
    return result


def rerun_when_lost(task: TaskRow) -> bool:
    """Whether a task whose worker died, with no attempt left, runs again all the same: a
    Django task does (by default its function runs once, yet the contract runs it at least
    once), up to ``LOST_RERUNS`` lost attempts, so one that kills its worker every time ends."""
    if task.tool != DJANGO_TASK_TOOL:
        return False
    log = task.attempt_log
    return sum(1 for entry in log if (entry.get("error") or {}).get("type") == "lost") < LOST_RERUNS


# --- running (the worker process) ---------------------------------------------------------------


class TaskThreads(Executor):
    """A fixed number of daemon threads for sync task functions. Not a ThreadPoolExecutor: its
    threads are joined when the interpreter exits, so a function that never returns (timed out,
    cancelled, abandoned) would keep a stopped worker process alive."""

    def __init__(self, size: int) -> None:
        self._work: queue.SimpleQueue[tuple[Future[Any], Any]] = queue.SimpleQueue()
        for number in range(size):
            name = f"clawsite-task-{number}"
            threading.Thread(target=self._serve, name=name, daemon=True).start()

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self._work.put((future, functools.partial(fn, *args, **kwargs)))
        return future

    def _serve(self) -> None:
        while True:
            future, call = self._work.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as error:  # handed to the awaiting coroutine
                future.set_exception(error)


_threads: TaskThreads | None = None
_threads_lock = threading.Lock()


def _pool() -> TaskThreads:
    global _threads
    with _threads_lock:
        if _threads is None:
            _threads = TaskThreads(settings.CLAWSITE_WORKER_THREADS)
    return _threads


def _ended(result: TaskResult, final: bool, failed: TaskFunctionError | None, value: Any) -> None:
    """Update ``result`` for ``task_finished``: succeeded, failed for good, or to be retried."""
    object.__setattr__(result, "finished_at", timezone.now())
    if failed is None:
        object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
        object.__setattr__(result, "_return_value", value)
        return
    result.errors.append(
        TaskError(exception_class_path=failed.exception_class_path, traceback=failed.traceback)
    )
    object.__setattr__(
        result, "status", TaskResultStatus.FAILED if final else TaskResultStatus.READY
    )


def _run_sync(
    task: Task,
    result: TaskResult,
    args: list[Any],
    kwargs: dict[str, Any],
    final: bool,
    abandoned: threading.Event,
) -> Any:
    """In a task thread: the function, its signals, its own connections closed after."""
    sender = type(task.get_backend())
    try:
        task_started.send(sender=sender, task_result=result)
        try:
            value = json_round_trip(task.func(*args, **kwargs))
        except Exception as error:
            failed = TaskFunctionError(error)
            _ended(result, final, failed, None)
            if not abandoned.is_set():  # a timed-out attempt's end is not this thread's to say
                task_finished.send(sender=sender, task_result=result)
            raise failed from None
        _ended(result, final, None, value)
        if not abandoned.is_set():
            task_finished.send(sender=sender, task_result=result)
        return value
    finally:
        connections.close_all()


async def _asend(signal: Signal, sender: type, result: TaskResult) -> None:
    """``signal.asend``, which runs sync receivers in a thread: a hop per signal, the better part
    of an async no-op task's cost (bench profile). When the only receivers are Django's own
    (they log a line), they are called here on the loop instead."""
    try:
        sync_receivers, async_receivers = signal._live_receivers(sender)
    except (AttributeError, TypeError, ValueError):  # a Django whose private API changed
        sync_receivers, async_receivers = [None], []  # type: ignore[list-item]  # "not only Django's"
    if not async_receivers and all(
        getattr(receiver, "__module__", None) == "django.tasks.signals"
        for receiver in sync_receivers
    ):
        signal.send(sender=sender, task_result=result)
    else:
        await signal.asend(sender=sender, task_result=result)


async def _run_async(
    task: Task, result: TaskResult, args: list[Any], kwargs: dict[str, Any], final: bool
) -> Any:
    sender = type(task.get_backend())
    await _asend(task_started, sender, result)
    try:
        value = json_round_trip(await task.func(*args, **kwargs))
    except Exception as error:
        failed = TaskFunctionError(error)
        _ended(result, final, failed, None)
        await _asend(task_finished, sender, result)
        raise failed from None
    _ended(result, final, None, value)
    await _asend(task_finished, sender, result)
    return value


async def run_django_task(row: TaskRow) -> ToolOutcome:
    """Run one attempt of a claimed Django task: ``{"return_value": ...}``, or raise
    ``TaskFunctionError`` (retried while attempts remain) or ``ToolError``."""
    try:
        task = load_task(row.args["task"])
    except (KeyError, TypeError, ValueError) as error:
        raise ToolError("invalid_task", str(error)) from None
    result = task_result(row, task, task.backend)
    args = list(row.args.get("args", []))
    if task.takes_context:
        args.insert(0, TaskContext(task_result=result))
    kwargs = dict(row.args.get("kwargs", {}))
    final = row.attempts >= row.max_attempts
    if iscoroutinefunction(task.func):
        value = await _run_async(task, result, args, kwargs, final)
    else:
        abandoned = threading.Event()
        call = functools.partial(_run_sync, task, result, args, kwargs, final, abandoned)
        context = contextvars.copy_context()  # the task's log lines keep its task_id
        try:
            value = await asyncio.get_running_loop().run_in_executor(_pool(), context.run, call)
        except asyncio.CancelledError:
            abandoned.set()
            raise
    return ToolOutcome(result={"return_value": value})
