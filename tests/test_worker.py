"""The worker engine in-process: retries with backoff, timeouts, cancellation, graceful stop,
lost leases. Real SQLite file, real Redis, the engine on the test's event loop; tasks are the
test-only ``test_ledger`` tool, whose ledger shows every execution."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from tasks_app import services
from tasks_app.db import run_in_db_thread
from tasks_app.models import Task, TaskStatus
from tasks_app.worker import WorkerEngine
from tests.tools_for_tests import LedgerTool, await_task, ledger_path, read_ledger, submit
from tests.tools_for_tests import ledger_tools as ledger_tools

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

RETRY_BASE = 0.2


@pytest.fixture
async def engine(ledger_tools: None, settings: Any) -> AsyncIterator[WorkerEngine]:
    settings.CLAWSITE_RETRY_BASE_SECONDS = RETRY_BASE
    engine = WorkerEngine(concurrency=4, tick_seconds=0.05, lease_seconds=1.5)
    await engine.start()
    yield engine
    await engine.stop(grace_seconds=0)


def events(username: str, key: str) -> list[str]:
    return [event for event, k, _, _ in read_ledger(ledger_path(username)) if k == key]


async def test_a_task_runs_once_and_succeeds(engine: WorkerEngine, alice: Any) -> None:
    task = await run_in_db_thread(submit, alice, tool="test_ledger", args={"key": "k"})
    task = await await_task(task.id)
    assert task.status == TaskStatus.SUCCEEDED and task.result["key"] == "k"
    assert task.attempts == 1 and task.worker_id == engine.worker_id
    assert [e["error"] for e in task.attempt_log] == [None]
    assert events("alice", "k") == ["start", "end"]


async def test_retryable_failures_are_retried_with_backoff_then_succeed(
    engine: WorkerEngine, alice: Any
) -> None:
    task = await run_in_db_thread(
        submit, alice, tool="test_ledger", args={"key": "k", "fail_times": 2}, max_attempts=3
    )
    task = await await_task(task.id)
    assert task.status == TaskStatus.SUCCEEDED and task.attempts == 3 and task.error is None
    assert [(e["attempt"], (e["error"] or {}).get("type")) for e in task.attempt_log] == [
        (1, "flaky"),
        (2, "flaky"),
        (3, None),
    ]
    starts = [at for event, key, _, at in read_ledger(ledger_path("alice")) if event == "start"]
    # Backoff with jitter: at least half of base * 2**(attempt-1) between attempts.
    assert starts[1] - starts[0] >= RETRY_BASE / 2
    assert starts[2] - starts[1] >= RETRY_BASE


async def test_retryable_failures_stop_at_max_attempts(engine: WorkerEngine, alice: Any) -> None:
    task = await run_in_db_thread(
        submit, alice, tool="test_ledger", args={"key": "k", "fail_times": 9}, max_attempts=2
    )
    task = await await_task(task.id)
    assert task.status == TaskStatus.FAILED and task.attempts == 2
    assert task.error["type"] == "flaky" and len(task.attempt_log) == 2
    assert events("alice", "k") == ["start", "start"]


async def test_a_failure_that_is_not_retryable_fails_at_once(
    engine: WorkerEngine, alice: Any
) -> None:
    task = await run_in_db_thread(
        submit, alice, tool="test_ledger", args={"key": "k", "fail_times": 1, "retryable": False}
    )
    task = await await_task(task.id)
    assert (task.status, task.attempts, task.error["type"]) == (TaskStatus.FAILED, 1, "flaky")


async def test_timeout_cancels_the_attempt_records_it_and_retries(
    engine: WorkerEngine, alice: Any
) -> None:
    task = await run_in_db_thread(
        submit,
        alice,
        tool="test_ledger",
        args={"key": "k", "seconds": 30},
        timeout=0.2,
        max_attempts=2,
    )
    task = await await_task(task.id)
    assert task.status == TaskStatus.FAILED and task.error["type"] == "timeout"
    assert [e["error"]["type"] for e in task.attempt_log] == ["timeout", "timeout"]
    # The tool saw the cancellation (a subprocess tool would kill its process group there).
    assert events("alice", "k") == ["start", "cancelled", "start", "cancelled"]


def test_the_default_timeout_is_the_tools(alice: Any, ledger_tools: None) -> None:
    task = submit(alice, tool="test_ledger", args={"key": "k"})
    assert task.timeout == LedgerTool.default_timeout
    assert submit(alice, tool="test_ledger", args={"key": "j"}, timeout=2.5).timeout == 2.5


async def test_cancelling_a_running_task_cancels_its_attempt(
    engine: WorkerEngine, alice: Any
) -> None:
    task = await run_in_db_thread(
        submit, alice, tool="test_ledger", args={"key": "k", "seconds": 30}
    )
    await await_task(task.id, lambda t: t.status == TaskStatus.RUNNING)
    answered = await run_in_db_thread(services.cancel_task, task)
    assert answered.status == TaskStatus.RUNNING  # the API answers 202 with this
    # No consumer here, so no hint: the worker finds the flag on its housekeeping.
    task = await await_task(task.id)
    assert task.status == TaskStatus.CANCELLED and task.error["type"] == "cancelled"
    assert task.attempts == 1 and task.attempt_log[-1]["error"]["type"] == "cancelled"
    assert events("alice", "k") == ["start", "cancelled"]
    assert task.id not in engine.running


async def test_the_cancel_hint_cancels_without_waiting_for_housekeeping(
    engine: WorkerEngine, alice: Any
) -> None:
    engine.housekeeping_seconds = 3600
    task = await run_in_db_thread(
        submit, alice, tool="test_ledger", args={"key": "k", "seconds": 30}
    )
    await await_task(task.id, lambda t: t.status == TaskStatus.RUNNING)
    # The row says running once the claim commits; the engine starts the attempt when the
    # claim's round trip returns to its loop, a moment later.
    for _ in range(3000):
        if engine.cancel(task.id):
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the engine never started the claimed task")
    task = await await_task(task.id)
    assert task.status == TaskStatus.CANCELLED


async def test_a_claimed_task_flagged_for_cancel_never_runs(
    engine: WorkerEngine, alice: Any
) -> None:
    def flagged_queued_task() -> Task:
        # As left by a worker that stopped while a cancel was on its way.
        task = submit(
            alice,
            tool="test_ledger",
            args={"key": "k"},
            run_after=timezone.now() + timedelta(days=1),
        )
        Task.objects.filter(pk=task.id).update(cancel_requested=True, run_after=None)
        return task

    task = await run_in_db_thread(flagged_queued_task)
    engine.wake()
    task = await await_task(task.id)
    assert task.status == TaskStatus.CANCELLED and task.attempts == 1
    assert events("alice", "k") == []


async def test_an_attempt_whose_lease_was_given_away_stops(
    engine: WorkerEngine, alice: Any
) -> None:
    task = await run_in_db_thread(
        submit, alice, tool="test_ledger", args={"key": "k", "seconds": 30}
    )
    await await_task(task.id, lambda t: t.status == TaskStatus.RUNNING)
    # As if this worker had stalled past its lease: reaped, then claimed by another worker.
    await run_in_db_thread(
        lambda: Task.objects.filter(pk=task.id).update(worker_id="other", attempts=2)
    )
    # The tool logs its cancellation a moment before the engine lets go of the attempt.
    await await_task(
        task.id,
        lambda t: events("alice", "k") == ["start", "cancelled"] and t.id not in engine.running,
    )
    row = await run_in_db_thread(Task.objects.get, pk=task.id)
    assert (row.status, row.worker_id, row.attempts) == (TaskStatus.RUNNING, "other", 2)


async def test_graceful_stop_finishes_short_tasks_and_requeues_the_rest(
    ledger_tools: None, alice: Any
) -> None:
    engine = WorkerEngine(concurrency=4, tick_seconds=0.05, lease_seconds=5)
    await engine.start()
    short = await run_in_db_thread(
        submit, alice, tool="test_ledger", args={"key": "short", "seconds": 0.3}
    )
    long = await run_in_db_thread(
        submit, alice, tool="test_ledger", args={"key": "long", "seconds": 30}, max_attempts=1
    )
    for task in (short, long):
        await await_task(task.id, lambda t: t.status == TaskStatus.RUNNING)
    await engine.stop(grace_seconds=2)
    short, long = [await run_in_db_thread(Task.objects.get, pk=t.id) for t in (short, long)]
    assert short.status == TaskStatus.SUCCEEDED
    # Back in the queue, and the interrupted attempt does not use up its only attempt.
    assert (long.status, long.attempts, long.max_attempts, long.error) == (
        TaskStatus.QUEUED,
        1,
        2,
        None,
    )
    assert long.attempt_log[-1]["error"]["type"] == "worker_shutdown"
    assert events("alice", "long") == ["start", "cancelled"]
    assert not engine.running

    # The next worker runs it to its end.
    await run_in_db_thread(lambda: Task.objects.filter(pk=long.id).update(args={"key": "long"}))
    engine = WorkerEngine(concurrency=4, tick_seconds=0.05, lease_seconds=5)
    await engine.start()
    try:
        long = await await_task(long.id)
    finally:
        await engine.stop(grace_seconds=0)
    assert (long.status, long.attempts) == (TaskStatus.SUCCEEDED, 2)
