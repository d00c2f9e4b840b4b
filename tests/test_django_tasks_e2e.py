"""Django tasks on real worker processes: this process enqueues with the django.tasks API into
the test database, ``runworker`` processes (pointed at the same database, and Redis prefix) run
them, and this process reads the results: ``get_result`` from another process than the worker's.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.tasks import TaskResult, TaskResultStatus
from django.utils import timezone

from tasks_app import queues
from tasks_app.models import Task, TaskStatus
from tests import django_tasks_fixtures as fx
from tests.stack import Stack, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Workers:
    """``runworker`` processes on this test's database."""

    def __init__(self, folder: Path) -> None:
        self.signals = folder / "signals.log"
        self.stack = Stack(
            folder,
            {
                "DATABASE_URL": database_url(),
                "CLAWSITE_REDIS_PREFIX": settings.REDIS_PREFIX,
                "CLAWSITE_TEST_SIGNALS_FILE": str(self.signals),
                "CLAWSITE_LEASE_SECONDS": "2",
                "CLAWSITE_WORKER_GRACE_SECONDS": "1",
                "CLAWSITE_RETRY_BASE_SECONDS": "0.1",
                "CLAWSITE_RETRY_MAX_SECONDS": "0.2",
            },
        )

    def start(self, **env: str) -> Any:
        return self.stack.start_worker(**env)

    def signal_lines(self) -> list[list[str]]:
        if not self.signals.exists():
            return []
        return [line.split() for line in self.signals.read_text().splitlines()]


@pytest.fixture
def workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workers]:
    workers = Workers(tmp_path / "workers")
    monkeypatch.setenv("CLAWSITE_TEST_SIGNALS_FILE", str(workers.signals))  # enqueued: here
    yield workers
    workers.stack.stop()  # before the test database is flushed


def finished(result: TaskResult, timeout: float = 60) -> TaskResult:
    def done() -> bool:
        result.refresh()
        return result.is_finished

    wait_for(done, timeout=timeout, interval=0.1, message=f"task {result.id} to finish")
    return result


def test_sync_and_async_functions_run_and_return(workers: Workers) -> None:
    workers.start()
    results: dict[str, TaskResult[Any, Any]] = {
        "meaning": fx.calculate_meaning_of_life.enqueue(),
        "add": fx.async_add.enqueue(2, 40),
        "complex": fx.complex_return_value.enqueue(),
        "echo": fx.echo.enqueue(1, [2], k={"v": None}),
        "noop": fx.noop_task.enqueue(),
        "noop_async": fx.noop_task_async.enqueue(),
        "orm": fx.count_users.enqueue(),
        "context": fx.get_context.enqueue(),
    }
    for result in results.values():
        assert finished(result).status == TaskResultStatus.SUCCESSFUL, result.errors
    values = {name: result.return_value for name, result in results.items()}
    assert values["meaning"] == 42 and values["add"] == 42
    assert values["complex"] == {
        "tuple": [1, 2],
        "3": "three",
        "nested": [{"x": None, "y": True}],
        "text": "é",
    }
    assert values["echo"] == {"args": [1, [2]], "kwargs": {"k": {"v": None}}}
    assert values["noop"] is None and values["noop_async"] is None and values["orm"] == 0
    assert values["context"] == {"attempt": 1, "id": results["context"].id}
    meaning = results["meaning"]
    assert len(meaning.worker_ids) == 1 and meaning.errors == []
    assert meaning.enqueued_at <= meaning.started_at <= meaning.finished_at
    row = Task.objects.get(pk=meaning.id)
    assert row.result == {"return_value": 42} and row.status == TaskStatus.SUCCEEDED


def test_exceptions_are_recorded_with_class_path_and_traceback(workers: Workers) -> None:
    workers.start()
    sync, async_ = fx.failing_task_value_error.enqueue(), fx.failing_task_async.enqueue()
    for result, cls, text in (
        (sync, "builtins.ValueError", "This Task failed due to ValueError"),
        (async_, "builtins.KeyError", "missing"),
    ):
        assert finished(result).status == TaskResultStatus.FAILED
        (error,) = result.errors  # one attempt by default: no retry
        assert error.exception_class_path == cls
        assert "Traceback (most recent call last)" in error.traceback and text in error.traceback
        with pytest.raises(ValueError, match="failed"):
            _ = result.return_value
        row = Task.objects.get(pk=result.id)
        assert row.error["type"] == "exception" and row.error["exception_class_path"] == cls
        assert row.attempts == 1


def test_retries_up_to_max_attempts_with_one_error_per_attempt(workers: Workers) -> None:
    workers.start()
    recovers, never = fx.fails_until_third_attempt.enqueue(), fx.always_fails_twice.enqueue()
    assert finished(recovers).status == TaskResultStatus.SUCCESSFUL
    assert recovers.return_value == 3 and len(recovers.worker_ids) == 3
    assert [e.exception_class_path for e in recovers.errors] == ["builtins.RuntimeError"] * 2
    assert "attempt 1 fails" in recovers.errors[0].traceback
    assert "attempt 2 fails" in recovers.errors[1].traceback
    assert finished(never).status == TaskResultStatus.FAILED
    assert len(never.errors) == 2 and len(never.worker_ids) == 2


def test_timeouts_fail_the_attempt_and_a_late_return_is_dropped(
    workers: Workers, tmp_path: Path
) -> None:
    workers.start()
    marker = tmp_path / "late"
    sync, async_ = fx.sleeps_past_its_timeout.enqueue(str(marker)), None
    async_ = fx.sleeps_past_its_timeout_async.enqueue()
    for result in (sync, async_):
        assert finished(result).status == TaskResultStatus.FAILED
        (error,) = result.errors
        assert error.exception_class_path == "builtins.TimeoutError"
        assert Task.objects.get(pk=result.id).error["type"] == "timeout"
    # The sync function's thread ran on and returned; nothing of it reached the row.
    wait_for(marker.exists, timeout=30, message="the timed-out thread to return")
    after = fx.noop_task.enqueue()
    finished(after)  # the worker wrote more since
    row = Task.objects.get(pk=sync.id)
    assert row.status == TaskStatus.FAILED and row.result is None
    assert [line[0] for line in workers.signal_lines() if line[1] == sync.id] == [
        "enqueued",
        "started",
    ]


def test_priority_order_and_run_after(workers: Workers, tmp_path: Path) -> None:
    ledger = tmp_path / "order"
    for name, priority in [("low", -5), ("high", 50), ("mid", 0), ("mid2", 0), ("top", 100)]:
        fx.append_line.using(priority=priority).enqueue(str(ledger), name)
    workers.start(CLAWSITE_WORKER_CONCURRENCY="1")
    wait_for(lambda: ledger.exists() and len(ledger.read_text().split()) == 5, timeout=60)
    assert ledger.read_text().split() == ["top", "high", "mid", "mid2", "low"]
    run_after = timezone.now() + timedelta(seconds=3)
    later = fx.append_line.using(run_after=run_after).enqueue(str(ledger), "later")
    assert finished(later).status == TaskResultStatus.SUCCESSFUL
    assert later.started_at >= run_after and later.task.run_after == run_after


def test_queue_routing_and_pause(workers: Workers, tmp_path: Path) -> None:
    ledger = str(tmp_path / "queues")
    workers.start(CLAWSITE_WORKER_QUEUES="a")
    in_a = fx.append_line.using(queue_name="a").enqueue(ledger, "a1")
    in_b = fx.append_line.using(queue_name="b").enqueue(ledger, "b1")
    assert finished(in_a).status == TaskResultStatus.SUCCESSFUL
    queues.set_paused("a", True)
    paused = fx.append_line.using(queue_name="a").enqueue(ledger, "a2")
    # Give the worker many claims: neither the paused queue nor queue b runs.
    probe = fx.noop_task.using(queue_name="a").enqueue()
    queues.set_paused("a", False)
    assert finished(probe).status == TaskResultStatus.SUCCESSFUL  # a resumed queue runs again
    assert finished(paused).status == TaskResultStatus.SUCCESSFUL
    in_b.refresh()
    assert in_b.status == TaskResultStatus.READY
    assert Path(ledger).read_text().split() == ["a1", "a2"]


def test_a_paused_queue_runs_nothing_until_resumed(workers: Workers, tmp_path: Path) -> None:
    queues.set_paused("slow", True)
    workers.start()
    held = fx.noop_task.using(queue_name="slow").enqueue()
    passing = fx.noop_task.enqueue()
    assert finished(passing).status == TaskResultStatus.SUCCESSFUL
    # The worker claimed after `held` was enqueued, and left it.
    held.refresh()
    assert held.status == TaskResultStatus.READY and held.worker_ids == []
    queues.set_paused("slow", False)
    assert finished(held).status == TaskResultStatus.SUCCESSFUL


def test_a_rolled_back_enqueue_never_runs(workers: Workers, tmp_path: Path) -> None:
    workers.start()
    ledger = tmp_path / "rollback"
    with pytest.raises(RuntimeError), transaction.atomic():
        gone = fx.append_line.enqueue(str(ledger), "rolled back")
        raise RuntimeError
    with transaction.atomic():
        kept = fx.append_line.enqueue(str(ledger), "committed")
    assert finished(kept).status == TaskResultStatus.SUCCESSFUL
    assert ledger.read_text().split() == ["committed"]
    assert not Task.objects.filter(pk=gone.id).exists()


def test_signals_are_sent_by_the_enqueuer_and_the_worker(workers: Workers) -> None:
    workers.start()
    ok, bad = fx.calculate_meaning_of_life.enqueue(), fx.failing_task_value_error.enqueue()
    finished(ok), finished(bad)
    wait_for(lambda: len(workers.signal_lines()) >= 6, timeout=30)
    lines = {(line[0], line[1]): line for line in workers.signal_lines()}
    here = str(os.getpid())
    assert lines[("enqueued", ok.id)][2:] == ["READY", here]
    assert lines[("started", ok.id)][2] == "RUNNING" and lines[("started", ok.id)][3] != here
    assert lines[("finished", ok.id)][2] == "SUCCESSFUL"
    assert lines[("finished", bad.id)][2] == "FAILED"
    assert lines[("finished", bad.id)][3] == lines[("started", ok.id)][3]  # the worker's pid


def test_a_worker_killed_during_a_sync_task_another_runs_it_once_more(
    workers: Workers, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    first = workers.start()
    result = fx.blocks_on_first_attempt.enqueue(str(ledger))
    wait_for(lambda: ledger.exists() and "start 1" in ledger.read_text(), timeout=60)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    workers.start()
    assert finished(result, timeout=90).status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == "finished"
    lines = ledger.read_text().splitlines()
    assert [line.rsplit(" ", 1)[0] for line in lines] == ["start 1", "start 2", "end 2"]
    assert len(result.worker_ids) == 2 and result.worker_ids[0] != result.worker_ids[1]
    (lost,) = result.errors
    assert "lost" in lost.traceback
    assert Task.objects.get(pk=result.id).attempts == 2


def test_a_stopping_worker_exits_though_a_sync_function_never_returns(
    workers: Workers, tmp_path: Path
) -> None:
    """SIGTERM: the stuck attempt is requeued after the grace period and the process exits; its
    thread (a daemon) cannot hold the interpreter open."""
    ledger = tmp_path / "ledger"
    worker = workers.start()
    result = fx.blocks_on_first_attempt.enqueue(str(ledger))
    wait_for(lambda: ledger.exists() and "start 1" in ledger.read_text(), timeout=60)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0  # not the 120 s the function sleeps
    row = Task.objects.get(pk=result.id)
    assert row.status == TaskStatus.QUEUED
    assert row.attempt_log[-1]["error"]["type"] == "worker_shutdown"
    workers.start()
    assert finished(result, timeout=90).status == TaskResultStatus.SUCCESSFUL
    assert result.errors == []  # a stopped worker is not a failed attempt
