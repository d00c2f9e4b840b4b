"""Every change of a task's state, one named verb each: submit (and enqueue, by code), claim,
progress, finish (and the retry or requeue it carries), cancel, retry, reap, delete, prune. Each
writes through ``store`` (or the model's transition methods) and, after commit, tells the
watchers (and the workers). Callers decide; only this module changes a task.

Sync functions (ORM and ``store``); async callers run them through ``tasks_app.db``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from pydantic import ValidationError

from tools_app.errors import validation_details
from tools_app.registry import Tool, get_tool

from . import audit, store
from .db import write_lock
from .django_tasks import rerun_when_lost
from .errors import ApiError
from .events import ask_workers_to_cancel, publish_task_changes, publish_task_deletions
from .flow import queued_counts
from .limits import WorkerLimits
from .metrics import record_finished, record_submitted
from .models import TERMINAL_STATUSES, Task, TaskSource, TaskStatus
from .queue_names import queue_name_problem
from .retry import status_after_failure
from .schemas import TaskSubmission
from .store import Completion


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


def _owner_id(owner: Any) -> int | None:
    return None if owner is None else owner.pk


def _after_commit(tasks: Sequence[Task], *, wake: bool = False) -> None:
    """Tell the watchers (and, with ``wake``, the workers) once the transaction commits."""
    if not tasks and not wake:
        return

    def notify() -> None:
        publish_task_changes(tasks, wake=wake)

    transaction.on_commit(notify)


# (owner, [(submission, tool), ...]) or (owner, [...], source): see submit_grouped.
SubmitRequest = (
    tuple[Any, Sequence[tuple[TaskSubmission, Tool]]]
    | tuple[Any, Sequence[tuple[TaskSubmission, Tool]], str]
)


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
        try:
            return _submit(owner, validated, source)
        except IntegrityError:
            # Another request inserted one of our idempotency keys between our check and our
            # insert: the second pass finds it.
            return _submit(owner, validated, source)
    except store.UNSTORABLE as error:
        raise ApiError(
            "invalid_args", f"The task cannot be stored: {type(error).__name__}: {error}"
        ) from None


def submit_grouped(
    requests: Sequence[SubmitRequest],
) -> list[list[tuple[Task, bool]] | Exception]:
    """Several callers' ``submit_tasks`` in one transaction: one commit for all (group commit).
    Each request is ``(owner, validated)``, or ``(owner, validated, source)`` when the tasks
    come from elsewhere than the API (MCP).

    Without idempotency keys nothing can conflict, so all the new tasks go in one statement.
    With keys, each request runs in its own savepoint, so one that fails (an idempotency
    ``conflict``) changes nothing and leaves the others alone; its exception is its result.
    Every value was checked when validated; should one still break the shared statement, the
    group is rolled back and each request is tried alone, so only the bad one fails.
    """
    sourced = [(r[0], r[1], r[2] if len(r) > 2 else TaskSource.API) for r in requests]
    try:
        with write_lock(), transaction.atomic():
            return _submit_together(sourced)
    except store.UNSTORABLE:
        pass  # tried again below, one by one
    with write_lock(), transaction.atomic():
        return [_submit_alone(*request) for request in sourced]


def _submit_together(
    sourced: list[tuple[Any, Sequence[tuple[TaskSubmission, Tool]], str]],
) -> list[list[tuple[Task, bool]] | Exception]:
    if not any(s.idempotency_key for _, validated, _ in sourced for s, _ in validated):
        now, order = timezone.now(), itertools.count()
        results: list[list[tuple[Task, bool]] | Exception] = []
        new: list[Task] = []
        for owner, validated, source in sourced:
            refused = queued_counts.make_room(_owner_id(owner), len(validated))
            if refused is not None:
                results.append(refused)
                continue
            outcome = [
                (_new_task(owner, s, tool, now, next(order), source), True) for s, tool in validated
            ]
            new.extend(task for task, _ in outcome)
            results.append(outcome)
        if new:
            _insert(new)
        return results
    return [_submit_alone(*request) for request in sourced]


def _submit_alone(
    owner: Any, validated: Sequence[tuple[TaskSubmission, Tool]], source: str
) -> list[tuple[Task, bool]] | Exception:
    """One request in a savepoint of the caller's transaction; its failure is its result."""
    try:
        return submit_tasks(owner, validated, source)
    except ApiError as error:
        return error


def enqueue_tasks(new: list[Task]) -> None:
    """Insert new tasks built by code (``store.new_task``; Django tasks): in the caller's
    transaction when there is one, else in one of their own; announced after commit."""
    if transaction.get_connection().in_atomic_block:
        _insert(new)
        return
    with write_lock(), transaction.atomic():
        _insert(new)


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
            refused = queued_counts.make_room(_owner_id(owner), len(new))
            if refused is not None:
                raise refused
            _insert(new)
    return outcome


def cancel_task(task: Task, actor: Any = None) -> Task:
    """Cancel a queued task at once; ask the worker to cancel a running one. ``conflict`` when
    the task already finished. Audited (``actor``: who asked)."""
    with audit.recording(actor, "task.cancel", task.pk):
        return _cancel_task(task)


def _cancel_task(task: Task) -> Task:
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


def retry_task(task: Task, actor: Any = None) -> Task:
    """Queue a failed or cancelled task again; ``conflict`` in any other state. Audited."""
    with audit.recording(actor, "task.retry", task.pk):
        return _retry_task(task)


def _retry_task(task: Task) -> Task:
    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=task.pk)
        if task.status not in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            raise ApiError(
                "conflict", f"Only failed or cancelled tasks can be retried, not {task.status}."
            )
        task.requeue()
        _after_commit([task], wake=True)
    return task


# --- the worker's transitions ---------------------------------------------------------------------


def finish_and_claim(
    worker_id: str,
    completions: Sequence[Completion],
    progress: Sequence[Task],
    free: int,
    lease: timedelta,
    queues: Sequence[str] = (),
    limiter: WorkerLimits | None = None,
) -> tuple[list[Task], list[Task]]:
    """A worker's round trip, in one transaction: write its finished attempts (each one's end:
    succeeded, failed, cancelled, or queued again) and its running tasks' progress, and claim up
    to ``free`` runnable tasks (within the limits on running work, given a ``limiter``).
    Returns the finished tasks as written and the claimed ones."""
    with write_lock(), transaction.atomic():
        written = finish_attempts(worker_id, completions)
        record_progress(worker_id, progress)
        claimed = claim_tasks(worker_id, free, lease, queues, limiter)
        if limiter is not None and limiter.frees_a_slot(written):
            # Other workers may be holding a task back for this slot.
            _after_commit([], wake=True)
    return written, claimed


def claim_tasks(
    worker_id: str,
    limit: int,
    lease: timedelta,
    queues: Sequence[str] = (),
    limiter: WorkerLimits | None = None,
) -> list[Task]:
    """Move up to ``limit`` runnable tasks (of ``queues``; none named: of every queue) to
    ``running`` for ``worker_id``, within the limits on running work when ``limiter`` sees any."""
    if limit <= 0:
        return []
    if limiter is not None and limiter.active():
        claimed = limiter.claim(worker_id, limit, timezone.now(), lease, queues)
    else:
        claimed = store.claim_runnable_tasks(worker_id, limit, timezone.now(), lease, queues)
    _after_commit(claimed)
    return claimed


def record_progress(worker_id: str, tasks: Sequence[Task]) -> None:
    """Write running tasks' in-memory progress (fenced by worker and attempt); announced only
    when every row was still this worker's, so a stale attempt's version is never shown."""
    if store.record_progress(worker_id, tasks):
        _after_commit(tasks)


def finish_attempts(worker_id: str, completions: Sequence[Completion]) -> list[Task]:
    """Write the ends of attempts ``worker_id`` ran; returns the tasks as written (an attempt
    whose lease was taken over is left out). After commit they are counted and announced."""
    written = store.complete_tasks(worker_id, completions)
    if written:
        _after_commit(written)
        transaction.on_commit(lambda: record_finished(written))
    return written


def reap_expired_leases(now: Any = None, limit: int = 500) -> list[Task]:
    """Tasks whose worker stopped renewing its lease: back to ``queued`` while they have attempts
    left, else ``failed`` as lost (``cancelled`` when a cancel was asked). Each row changes only
    if it is still the expired attempt read here."""
    now = now or timezone.now()
    changed = []
    with transaction.atomic():
        expired = Task.objects.running().filter(lease_expires_at__lt=now)
        for task in expired.order_by("lease_expires_at")[:limit]:
            status: str
            if task.cancel_requested:
                status = TaskStatus.CANCELLED
                error = {
                    "type": "cancelled",
                    "message": "Cancelled by request (its worker was lost).",
                }
            else:
                status = status_after_failure(task, retryable=True)
                error = {
                    "type": "lost",
                    "message": f"Worker {task.worker_id} stopped renewing its lease.",
                }
            completion = Completion(task=task, status=status, error=error, finished_at=now)
            if status == TaskStatus.FAILED and rerun_when_lost(task):
                completion.status = TaskStatus.QUEUED
                completion.max_attempts = task.max_attempts + 1
            changed.extend(store.complete_tasks(task.worker_id, [completion]))
        _after_commit(changed)
    return changed


# --- deletes ----------------------------------------------------------------------------------------


def delete_finished_tasks(tasks: QuerySet[Task], actor: Any = None) -> int:
    """Delete the finished tasks among ``tasks`` (queued and running ones are skipped: a worker
    may hold them); after commit, their watchers hear of it. Returns how many went. Audited
    when someone (``actor``) asked; the pruning is recorded by its command."""
    with transaction.atomic():
        doomed = list(tasks.filter(status__in=TERMINAL_STATUSES).values_list("id", "owner_id"))
        if doomed:
            Task.objects.filter(id__in=[task_id for task_id, _ in doomed]).delete()
            transaction.on_commit(lambda: publish_task_deletions(doomed))
            if actor is not None:
                ids = [str(task_id) for task_id, _ in doomed]
                audit.record(
                    actor, "task.delete", ids[0] if len(ids) == 1 else f"{len(ids)} tasks", ids
                )
    return len(doomed)


def prune_finished_tasks(
    older_than: timedelta, batch_size: int = 1000, dry_run: bool = False
) -> int:
    """Delete (or, with ``dry_run``, count) the tasks that finished before now - ``older_than``,
    a batch per transaction: workers and requests sharing a SQLite file wait for one batch at
    most, never for the whole purge."""
    cutoff = timezone.now() - older_than
    stale = Task.objects.finished().filter(finished_at__lt=cutoff).order_by("finished_at")
    if dry_run:
        return stale.count()
    deleted = 0
    while batch := delete_finished_tasks(
        Task.objects.filter(id__in=list(stale.values_list("id", flat=True)[:batch_size]))
    ):
        deleted += batch
    return deleted
