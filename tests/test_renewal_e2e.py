"""Workers that renew themselves: past CLAWSITE_WORKER_MAX_TASKS or _MAX_MEMORY_MB a worker
drains and becomes a fresh process under the same pid; no task is lost or run twice."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_llm import FakeLlm
from tests.stack import Stack, wait_for
from tests.test_limits_e2e import submit


@pytest.fixture
def llm() -> Iterator[FakeLlm]:
    server = FakeLlm(delay=0.02)
    yield server
    server.close()


def renewals(stack: Stack) -> int:
    return stack.log_text().count("worker renews itself")


def test_workers_renew_under_max_tasks_with_no_task_lost_or_run_twice(
    tmp_path: Path, llm: FakeLlm
) -> None:
    stack = Stack(
        tmp_path / "stack",
        {"CLAWSITE_LLM_BASE_URL": llm.url, "CLAWSITE_WORKER_MAX_TASKS": "4"},
    )
    stack.migrate()
    stack.start_web()
    token = stack.token("alice")
    try:
        workers = [stack.start_worker(), stack.start_worker()]
        pids = [worker.pid for worker in workers]
        prompts = [f"q{i}" for i in range(24)]
        ids = submit(stack, token, prompts)
        tasks = stack.wait_finished(token, ids, 180, 0.2)
        assert {t["status"] for t in tasks} == {"succeeded"}, stack.log_text()
        assert {t["attempts"] for t in tasks} == {1}
        assert sorted(llm.prompts) == sorted(prompts)  # each ran once, at the server's count
        assert renewals(stack) >= 24 // 4 - 1
        # Same processes (execv keeps the pid), still serving.
        assert [w.pid for w in workers] == pids and all(w.poll() is None for w in workers)
        more = submit(stack, token, ["again"])
        assert stack.wait_finished(token, more, 60, 0.2)
    finally:
        stack.stop()
    assert all(w.returncode == 0 for w in workers), stack.log_text()


def test_the_memory_watchdog_renews_a_worker_and_says_why(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "stack", {"CLAWSITE_WORKER_MAX_MEMORY_MB": "1"})
    stack.migrate()
    try:
        worker = stack.start_worker()
        wait_for(
            lambda: stack.log_text().count("CLAWSITE_WORKER_MAX_MEMORY_MB=1") >= 2,
            120,
            0.2,
            "two renewals for memory",
        )
        assert worker.poll() is None
        assert "resident memory" in stack.log_text()
    finally:
        stack.stop()


def test_a_stop_signal_during_a_renewal_stops_the_worker_cleanly(tmp_path: Path) -> None:
    # Past 1 MB the worker renews itself right after each start, so most of its life is spent
    # between execv and its signal handlers: a SIGTERM then must wait for them, not kill it.
    stack = Stack(tmp_path / "stack", {"CLAWSITE_WORKER_MAX_MEMORY_MB": "1"})
    stack.migrate()
    worker = stack.start_worker()
    try:
        wait_for(
            lambda: stack.log_text().count("CLAWSITE_WORKER_MAX_MEMORY_MB=1") >= 2,
            120,
            0.2,
            "two renewals for memory",
        )
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, stack.log_text()
    finally:
        stack.stop()
