"""Queues across real processes: daphne and ``runworker`` limited to some queues."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import CommandError, call_command

from tests.stack import PYTHON, Stack, wait_for


def submit(stack: Stack, token: str, queue: str) -> str:
    status, task = stack.request(
        "POST", "/api/v1/tasks", token, {"tool": "list_directory", "args": {}, "queue": queue}
    )
    assert status == 202, task
    return task["id"]


def read(stack: Stack, token: str, task_id: str) -> dict[str, Any]:
    status, task = stack.request("GET", f"/api/v1/tasks/{task_id}", token)
    assert status == 200
    return task


def test_a_worker_of_queue_a_never_runs_queue_bs_tasks(stack: Stack) -> None:
    token = stack.token("alice")
    stack.start_web()
    stack.start_worker(CLAWSITE_WORKER_QUEUES="a")
    a_ids = [submit(stack, token, "a") for _ in range(5)]
    b_ids = [submit(stack, token, "b") for _ in range(5)]
    wait_for(
        lambda: all(read(stack, token, i)["status"] == "succeeded" for i in a_ids),
        timeout=60,
        message="queue a's tasks to succeed",
    )
    assert {read(stack, token, i)["status"] for i in b_ids} == {"queued"}
    # A second worker, for queue b by option, takes them.
    stack.workers.append(
        stack._spawn("worker-b", [PYTHON, "manage.py", "runworker", "tasks", "--queues", "b,c"])
    )
    wait_for(
        lambda: all(read(stack, token, i)["status"] == "succeeded" for i in b_ids),
        timeout=60,
        message="queue b's tasks to succeed",
    )
    workers = {read(stack, token, i)["attempt_history"][0]["worker_id"] for i in a_ids}
    b_workers = {read(stack, token, i)["attempt_history"][0]["worker_id"] for i in b_ids}
    assert len(workers) == 1 and len(b_workers) == 1 and workers != b_workers


@pytest.mark.parametrize("queues", ["a b", "../x", "a,,b.c"])
def test_runworker_refuses_a_bad_queue_name(queues: str) -> None:
    with pytest.raises(CommandError, match="not a queue name"):
        call_command("runworker", "tasks", "--queues", queues)
