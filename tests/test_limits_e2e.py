"""Limits on running work across real worker processes (real daphne, Redis, SQLite file), with a
local LLM server whose own count of requests held at once is the evidence."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_llm import FakeLlm
from tests.stack import Stack, wait_for


@pytest.fixture
def llm() -> Iterator[FakeLlm]:
    server = FakeLlm(delay=0.4)
    yield server
    server.close()


def start(tmp_path: Path, llm: FakeLlm, limits: dict[str, Any], **env: str) -> tuple[Stack, str]:
    stack = Stack(
        tmp_path / "stack",
        {
            "CLAWSITE_LLM_BASE_URL": llm.url,
            "CLAWSITE_LIMITS": json.dumps(limits),
            "CLAWSITE_LIMITS_REFRESH_SECONDS": "0.5",
            **env,
        },
    )
    stack.migrate()
    stack.start_web()
    return stack, stack.token("alice")


def submit(stack: Stack, token: str, prompts: list[str]) -> list[str]:
    status, body = stack.request(
        "POST",
        "/api/v1/tasks/batch",
        token,
        {"tasks": [{"tool": "llm_chat", "args": {"prompt": p}} for p in prompts]},
    )
    assert status == 202, body
    return [task["id"] for task in body["tasks"]]


def set_limit(stack: Stack, key: str, **values: Any) -> None:
    """What a staff edit in the admin writes (the admin form itself: tests/test_limits.py)."""
    stack.manage(
        "shell",
        "-c",
        f"from tasks_app.models import Limit; Limit.objects.filter(key={key!r}).update(**{values!r})",
    )


def test_concurrency_never_exceeded_by_two_workers_and_an_edit_counts_without_restart(
    tmp_path: Path, llm: FakeLlm
) -> None:
    stack, token = start(tmp_path, llm, {"tool:llm_chat": {"concurrency": 2}})
    try:
        stack.start_worker()
        stack.start_worker()
        ids = submit(stack, token, [f"q{i}" for i in range(12)])
        tasks = stack.wait_finished(token, ids, 120, 0.2)
        assert {t["status"] for t in tasks} == {"succeeded"}, tasks
        assert {t["attempts"] for t in tasks} == {1}  # held tasks spent no attempt
        assert llm.max_holding == 2, llm.max_holding
        assert len(llm.prompts) == 12
        # Staff raise the limit while both workers run: it counts within seconds.
        set_limit(stack, "tool:llm_chat", concurrency=4)
        llm.reset_counts()
        ids = submit(stack, token, [f"r{i}" for i in range(16)])
        tasks = stack.wait_finished(token, ids, 120, 0.2)
        assert {t["status"] for t in tasks} == {"succeeded"}
        assert 2 < llm.max_holding <= 4, llm.max_holding
    finally:
        stack.stop()


def test_a_rate_holds_over_many_scaled_down_periods(tmp_path: Path, llm: FakeLlm) -> None:
    """2 starts a second (a token bucket of 2): over 14 starts by two workers, no stretch of
    time holds more starts than the bucket allows."""
    llm.delay = 0.02
    stack, token = start(tmp_path, llm, {"tool:llm_chat": {"rate": "2/s"}})
    try:
        stack.start_worker()
        stack.start_worker()
        ids = submit(stack, token, [f"q{i}" for i in range(14)])
        tasks = stack.wait_finished(token, ids, 120, 0.2)
        assert {t["status"] for t in tasks} == {"succeeded"}
        from datetime import datetime

        starts = sorted(datetime.fromisoformat(t["started_at"]).timestamp() for t in tasks)
        for i in range(len(starts)):
            for j in range(i + 1, len(starts)):
                # j - i + 1 starts within starts[j] - starts[i] seconds: at most the bucket
                # (2) plus what refills meanwhile (2/s), plus a millisecond of clock reading.
                allowed = 2 + 2 * (starts[j] - starts[i] + 0.01)
                assert j - i + 1 <= allowed, (i, j, starts)
        assert starts[-1] - starts[0] >= (14 - 2) / 2 - 0.05
    finally:
        stack.stop()


def test_a_killed_workers_slot_comes_back_with_its_lease(tmp_path: Path, llm: FakeLlm) -> None:
    llm.script = lambda prompt, count: ("slow", 60.0 if count == 1 else 0.05)
    stack, token = start(
        tmp_path, llm, {"tool:llm_chat": {"concurrency": 1}}, CLAWSITE_LEASE_SECONDS="3"
    )
    try:
        doomed = stack.start_worker()
        [first] = submit(stack, token, ["hang"])
        wait_for(lambda: llm.holding == 1, 60, 0.05, "the first chat to reach the server")
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        [second] = submit(stack, token, ["after"])
        stack.start_worker()
        tasks = stack.wait_finished(token, [first, second], 120, 0.2)
        assert [t["status"] for t in tasks] == ["succeeded", "succeeded"], tasks
        # The dead worker's attempt counted; its slot came back when the reaper took it back.
        assert tasks[0]["attempts"] == 2 and tasks[1]["attempts"] == 1
    finally:
        stack.stop()
