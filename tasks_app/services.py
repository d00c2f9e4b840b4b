"""Every user-visible change of a task: save, then after commit tell watchers (and workers).

Sync functions (ORM and ``store``); async callers run them through ``tasks_app.db``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from pydantic import ValidationError

from tools_app.registry import Tool, get_tool, validation_details

from . import store
from .db import write_lock
from .errors import ApiError
from .events import ask_workers_to_cancel, publish_task_changes
from .metrics import record_submitted
from .models import Task, TaskSource, TaskStatus
from .queues import queue_name_problem
from .schemas import TaskSubmission


def validate_submission(raw: Any, user: Any) -> tuple[TaskSubmission, Tool]:
    """Check one submission against the task fields and its tool's schema; raises ApiError."""
    if not isinstance(raw, dict):
        raise ApiError("invalid_json", "A task must be a JSON object.")
    try:
        submission = TaskSubmission.model_validate(raw)
    except ValidationError as exc:
        raise ApiError("invalid_args", "Invalid task fields.", validation_details(exc)) from None
    if (problem := queue_name_problem(submission.queue)) is not None:
        raise ApiError("invalid_args", problem, [{"loc": ["queue"], "message": problem}])
    tool = get_tool(submission.tool)
    if tool is None:
        raise ApiError("unknown_tool", f"No tool named {submission.tool!r}.")
    if reason := tool.disabled_reason(user):
        raise ApiError("tool_disabled", f"{reason[0].upper()}{reason[1:]}.")
    try:
        tool.parse_args(submission.args)
    except ValidationError as exc:
        raise ApiError(
            "invalid_args", f"Invalid arguments for {tool.name}.", validation_details(exc)
        ) from None
    return submission, tool


def _new_task(
    owner: Any,
    submission: TaskSubmission,
    tool: Tool,
    now: Any,
    index: int,
    source: str = TaskSource.API,
) -> Task:
    """The ``index``-th task of a submission: one microsecond after the one before, so the
    claim's FIFO (``created_at``) keeps the batch's order."""
    task = store.new_task(
        owner_id=owner.pk,
        tool=tool.name,
        queue=submission.queue,
        source=source,
        args=submission.args,
        priority=submission.priority,
        timeout=submission.timeout or tool.default_timeout,
        max_attempts=submission.max_attempts,
        run_after=submission.run_after,
        idempotency_key=submission.idempotency_key,
        created_at=now + timedelta(microseconds=index),
    )
    task.owner = owner  # cached: no query when something reads task.owner
    return task


def _same_request(task: Task, submission: TaskSubmission, tool: Tool) -> bool:
    return (
        task.tool == submission.tool
        and task.args == submission.args
        and task.priority == submission.priority
        and task.timeout == (submission.timeout or tool.default_timeout)
        and task.max_attempts == submission.max_attempts
        and task.run_after == submission.run_after
        and task.queue == submission.queue
    )


def _after_commit(tasks: Sequence[Task], *, wake: bool) -> None:
    def notify() -> None:
        publish_task_changes(tasks, wake=wake)

    transaction.on_commit(notify)


def submit_tasks(
    owner: Any,
    validated: Sequence[tuple[TaskSubmission, Tool]],
    source: str = TaskSource.API,
) -> list[tuple[Task, bool]]:
    """Create the tasks in one transaction; returns each with whether it was created.
    ``source``: where they come from (the API, a page, ...).

    A submission whose ``idempotency_key`` the owner used before answers the existing task when
    its content is the same, and raises ``conflict`` otherwise (nothing is created then).
    """
    try:
        return _submit(owner, validated, source)
    except IntegrityError:
        # Another request inserted one of our idempotency keys between our check and our insert:
        # the second pass finds it.
        return _submit(owner, validated, source)


def submit_grouped(
    requests: Sequence[tuple[Any, Sequence[tuple[TaskSubmission, Tool]]]],
) -> list[list[tuple[Task, bool]] | Exception]:
    """Several callers' ``submit_tasks`` in one transaction: one commit for all (group commit).

    Without idempotency keys nothing can conflict, so all the new tasks go in one statement.
    With keys, each request runs in its own savepoint, so one that fails (an idempotency
    ``conflict``) changes nothing and leaves the others alone; its exception is its result.
    """
    with write_lock(), transaction.atomic():
        if not any(s.idempotency_key for _, validated in requests for s, _ in validated):
            now, order = timezone.now(), itertools.count()
            results = [
                [(_new_task(owner, s, tool, now, next(order)), True) for s, tool in validated]
                for owner, validated in requests
            ]
            _insert([task for outcome in results for task, _ in outcome])
            return results
        grouped: list[list[tuple[Task, bool]] | Exception] = []
        for owner, validated in requests:
            try:
                grouped.append(submit_tasks(owner, validated))
            except (ApiError, IntegrityError) as error:
                grouped.append(error)
    return grouped


def _insert(new: list[Task]) -> None:
    """Write new tasks (the caller holds the transaction); after commit, tell the watchers,
    wake the workers and count them."""
    store.insert_tasks(new)
    _after_commit(new, wake=True)
    transaction.on_commit(lambda: record_submitted(new))


def _submit(
    owner: Any, validated: Sequence[tuple[TaskSubmission, Tool]], source: str
) -> list[tuple[Task, bool]]:
    now = timezone.now()
    keys = [s.idempotency_key for s, _ in validated if s.idempotency_key]
    with transaction.atomic():
        existing = (
            {
                t.idempotency_key: t
                for t in Task.objects.filter(owner=owner, idempotency_key__in=keys)
            }
            if keys
            else {}
        )
        outcome: list[tuple[Task, bool]] = []
        new: list[Task] = []
        for index, (submission, tool) in enumerate(validated):
            previous = (
                existing.get(submission.idempotency_key) if submission.idempotency_key else None
            )
            if previous is not None:
                if not _same_request(previous, submission, tool):
                    raise ApiError(
                        "conflict",
                        "This idempotency key was used with different content.",
                        {
                            "index": index,
                            "idempotency_key": submission.idempotency_key,
                            "task": previous.id,
                        },
                    )
                outcome.append((previous, False))
                continue
            task = _new_task(owner, submission, tool, now, index, source)
            if submission.idempotency_key:
                existing[submission.idempotency_key] = task
            new.append(task)
            outcome.append((task, True))
        if new:
            _insert(new)
    return outcome


def cancel_task(task: Task) -> Task:
    """Cancel a queued task at once; ask the worker to cancel a running one. ``conflict`` when
    the task already finished."""
    with transaction.atomic():
        # Locked on PostgreSQL, so a claim cannot slip between the check and the write (SQLite's
        # IMMEDIATE transaction already excludes it; select_for_update is a no-op there).
        task = Task.objects.select_for_update().get(pk=task.pk)
        if task.is_terminal:
            raise ApiError("conflict", f"The task is already {task.status}.")
        if task.status == TaskStatus.QUEUED:
            task.mark_cancelled()
            _after_commit([task], wake=False)
        else:
            task.request_cancel()
            transaction.on_commit(lambda: ask_workers_to_cancel(task.id))
    return task


def retry_task(task: Task) -> Task:
    """Queue a failed or cancelled task again; ``conflict`` in any other state."""
    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=task.pk)
        if task.status not in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            raise ApiError(
                "conflict", f"Only failed or cancelled tasks can be retried, not {task.status}."
            )
        task.requeue()
        _after_commit([task], wake=True)
    return task
