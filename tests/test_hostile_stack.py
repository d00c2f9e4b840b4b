"""The issue's pattern bombs against real daphne and worker processes: a worker fed the glob
bomb (pathlib's full_match never ended on it, holding the GIL: no heartbeat, no lease renewal,
no timeout) and regex bombs keeps its heartbeat and finishes the other user's tasks, and
every task ends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.stack import Stack, wait_for

pytestmark = pytest.mark.timeout(300)

GLOB_BOMB = "d/" + "*a" * 20 + "*b"
BOMBS: list[dict[str, Any]] = [
    {"path": ".", "glob": GLOB_BOMB},
    {"path": ".", "glob": "*" + "a*" * 30 + "b"},
    {"path": "d", "contains": "(x+x+)+y", "regex": True},
    {"path": "d", "contains": "(a|aa)*c", "regex": True},
    {"path": "d", "contains": "a{4294967294}", "regex": True},
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("bombs"), {"CLAWSITE_LEASE_SECONDS": "3"})
    running.migrate()
    running.start_web()
    running.start_worker()
    yield running
    running.stop()


def _terminal(stack: Stack, token: str, task_id: str) -> dict[str, Any]:
    status, task = stack.request("GET", f"/api/v1/tasks/{task_id}?wait=30", token)
    assert status == 200
    return task


def test_a_worker_fed_pattern_bombs_keeps_its_heartbeat_and_finishes_other_tasks(
    stack: Stack,
) -> None:
    alice, bob = stack.token("alice"), stack.token("bob")
    carol = stack.token("carol", staff=True)
    folder = stack.data_dir / "workspaces" / "alice" / "d"
    folder.mkdir(parents=True)
    for index in range(300):  # 40-character names: the glob bomb's worst case
        (folder / f"{index:03}{'a' * 37}").write_text("x" * 3000 + "\n" + "a" * 3000 + "\n")
    bombs = []
    for args in BOMBS:
        status, task = stack.request(
            "POST", "/api/v1/tasks", alice, {"tool": "search_files", "args": args, "timeout": 60}
        )
        assert status == 202, task
        bombs.append(task["id"])
    beats = [_heartbeat(stack, carol)]
    others = []
    for _ in range(20):
        status, task = stack.request(
            "POST", "/api/v1/tasks", bob, {"tool": "list_directory", "args": {}, "priority": 1}
        )
        assert status == 202
        others.append(task["id"])
    for task_id in others:
        assert _terminal(stack, bob, task_id)["status"] == "succeeded"
    for task_id in bombs:
        task = _terminal(stack, alice, task_id)
        assert task["status"] == "succeeded", task
        assert task["attempts"] == 1  # never reaped and run again: the lease was renewed
        assert task["result"]["truncated"] is False
    found = {task_id: _terminal(stack, alice, task_id)["result"] for task_id in bombs}
    assert found[bombs[0]]["matches"] == [] and found[bombs[1]]["matches"] == []
    assert found[bombs[2]]["matches"] == [] and found[bombs[4]]["matches"] == []
    # The heartbeat went on meanwhile (written every lease/3 = 1 s).
    wait_for(lambda: _heartbeat(stack, carol) > beats[0], timeout=30, message="a new heartbeat")


def _heartbeat(stack: Stack, staff_token: str) -> datetime:
    status, stats = stack.request("GET", "/api/v1/stats", staff_token)
    assert status == 200
    workers = stats["workers"]
    while not workers:
        time.sleep(0.2)
        workers = stack.request("GET", "/api/v1/stats", staff_token)[1]["workers"]
    return max(datetime.fromisoformat(w["last_heartbeat"]) for w in workers)


def test_results_over_the_cap_fail_alone_on_the_live_stack(stack: Stack) -> None:
    """A search whose answer is larger than the result cap fails with invalid_result."""
    alice = stack.token("alice")
    folder = Path(stack.data_dir / "workspaces" / "alice" / "wide")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lines.txt").write_text(("y" * 400 + "\n") * 40_000)  # ~16 MB of matches
    status, task = stack.request(
        "POST",
        "/api/v1/tasks",
        alice,
        {"tool": "search_files", "args": {"path": "wide", "contains": "y", "max_results": 100000}},
    )
    assert status == 202
    task = _terminal(stack, alice, task["id"])
    assert task["status"] == "failed" and task["error"]["type"] == "invalid_result", task
