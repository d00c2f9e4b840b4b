"""Shared by the kill tests (tests/test_kill.py) and the soak (tests/test_soak.py): a stack whose
processes load the test-only ledger tool, a private Redis, and the ledger's verdict.

The ledger (one line per start/end/cancel of each execution, written by the task body itself)
is the witness that does not depend on the database: it shows how often each task really ran,
by which process, and when.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tests.stack import Stack, free_port, wait_for
from tests.tools_for_tests import LEDGER, read_ledger

TERMINAL = {"succeeded", "failed", "cancelled"}

KILL_ENV = {
    "CLAWSITE_LEASE_SECONDS": "2",
    "CLAWSITE_EXTRA_TOOL_MODULES": "tests.tools_for_tests",
    "CLAWSITE_RETRY_BASE_SECONDS": "0.2",
    "CLAWSITE_WORKER_CONCURRENCY": "8",
    "CLAWSITE_WORKER_GRACE_SECONDS": "1",
    "CLAWSITE_LOG_LEVEL": "WARNING",
}


def ledger_stack(folder: Path, **env: str) -> tuple[Stack, str]:
    """A migrated stack with the web process up, and alice's token."""
    stack = Stack(folder, {**KILL_ENV, **env})
    stack.migrate()
    token = stack.token("alice")
    stack.start_web()
    return stack, token


def ledger_file(stack: Stack, username: str = "alice") -> Path:
    return stack.data_dir / "workspaces" / username / LEDGER


def submit_ledger_tasks(
    stack: Stack, token: str, keys: list[str], **fields: Any
) -> list[dict[str, Any]]:
    """Submit one ``test_ledger`` task per key, in batches of 500 through the API."""
    args = fields.pop("args", {})
    tasks: list[dict[str, Any]] = []
    for start in range(0, len(keys), 500):
        body = {
            "tasks": [
                {"tool": "test_ledger", "args": {"key": k, **args}, **fields}
                for k in keys[start : start + 500]
            ]
        }
        status, answer = stack.request("POST", "/api/v1/tasks/batch", token, body)
        assert status == 202, (status, answer)
        tasks += answer["tasks"]
    return tasks


def lookup(stack: Stack, token: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 1000):
        status, answer = stack.request(
            "POST", "/api/v1/tasks/lookup", token, {"ids": ids[start : start + 1000]}
        )
        assert status == 200, (status, answer)
        found.update({t["id"]: t for t in answer["tasks"]})
    return found


def wait_terminal(
    stack: Stack, token: str, ids: list[str], within: float
) -> dict[str, dict[str, Any]]:
    def drained() -> bool:
        for status in ("queued", "running"):
            code, page = stack.request("GET", f"/api/v1/tasks?status={status}&limit=1", token)
            if code != 200 or page["tasks"]:
                return False
        return True

    deadline = time.monotonic() + within
    wait_for(drained, timeout=within, interval=0.5, message="the queue to drain")

    def all_terminal() -> dict[str, dict[str, Any]] | None:
        tasks = lookup(stack, token, ids)
        return tasks if all(t["status"] in TERMINAL for t in tasks.values()) else None

    left = max(1.0, deadline - time.monotonic())
    return wait_for(all_terminal, timeout=left, interval=0.5, message="every task to finish")


def worker_pid(worker_id: str) -> int:
    """The pid in a worker id (``<host>-<pid>-<hex>``)."""
    return int(worker_id.rsplit("-", 2)[-2])


@dataclass
class Execution:
    pid: int
    started: float
    outcome: str | None = None  # "end", "cancelled", or None: the process died mid-task


def executions(path: Path) -> dict[str, list[Execution]]:
    runs: dict[str, list[Execution]] = {}
    for event, key, pid, at in read_ledger(path):
        if event == "start":
            runs.setdefault(key, []).append(Execution(pid, at))
        else:
            open_runs = [r for r in runs.get(key, []) if r.pid == pid and r.outcome is None]
            assert open_runs, f"{event} without start for {key} in {pid}"
            open_runs[-1].outcome = event
    return runs


@dataclass
class Kills:
    """Worker processes killed with SIGKILL, and when the signal was sent."""

    at: dict[int, float] = field(default_factory=dict)

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        self.at[process.pid] = time.time()
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def check_ledger(
    tasks: dict[str, dict[str, Any]], keys: dict[str, str], path: Path, kills: Kills
) -> dict[str, Any]:
    """Assert the invariants of at-least-once execution against the ledger; return the figures.

    ``keys`` maps task id to ledger key. Every task succeeded; ran at least once; every execution
    but the last was in a process that was then killed (a second execution happens only for
    tasks running at a kill); the next one started only after that kill (never two at once); the
    last one is by the worker the row names; the row counts every execution.
    """
    runs = executions(path)
    re_executed, recover = 0, 0.0
    for task_id, task in tasks.items():
        key = keys[task_id]
        assert task["status"] == "succeeded", (
            key,
            task["status"],
            task["error"],
            task["attempt_history"],
        )
        ran = runs.get(key, [])
        assert ran, f"{key} never ran"
        for earlier, later in itertools.pairwise(ran):
            assert earlier.pid in kills.at, (
                f"{key} ran again though {earlier.pid} was not killed: {ran}"
            )
            assert later.started >= kills.at[earlier.pid], f"{key} ran twice at once: {ran}"
            recover = max(recover, later.started - kills.at[earlier.pid])
        assert ran[-1].outcome == "end"
        assert worker_pid(task["attempt_history"][-1]["worker_id"]) == ran[-1].pid
        assert task["attempts"] >= len(ran)
        re_executed += len(ran) > 1
    return {
        "tasks": len(tasks),
        "kills": len(kills.at),
        "lost": sum(t["status"] not in TERMINAL for t in tasks.values()),
        "executions": sum(len(r) for r in runs.values()),
        "re_executed": re_executed,
        "longest_recovery_s": round(recover, 2),
    }


def kill_loop(
    stack: Stack,
    workers: list[subprocess.Popen[bytes]],
    path: Path,
    kills: Kills,
    rounds: int,
    done: Any,
    pause: tuple[float, float] = (0.5, 2.0),
    min_starts: int = 10,
) -> None:
    """``rounds`` times (or until ``done()``): pick a worker, wait until it runs tasks, SIGKILL it
    mid-batch, start a fresh one in its place."""
    for _ in range(rounds):
        if done():
            return
        index = random.randrange(len(workers))
        victim = workers[index]

        def victim_busy(pid: int = victim.pid) -> bool:
            return done() or sum(1 for _, _, p, _ in read_ledger(path) if p == pid) >= min_starts

        wait_for(victim_busy, timeout=120, interval=0.1, message="the worker to run tasks")
        time.sleep(random.uniform(*pause))  # somewhere in the middle of its batch
        if done():
            return
        kills.kill(victim)
        workers[index] = stack.start_worker()


class PrivateRedis:
    """A redis-server of the test's own on a free port: the one a test may stop and restart."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, timeout=20, message="redis-server to answer")

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.process = None
