"""Test-only tools, never installed in production.

The stack tests' processes load them by name (``CLAWSITE_EXTRA_TOOL_MODULES=tests.tools_for_tests``);
in-process tests call ``install()`` and ``uninstall()`` (the ``test_tools`` fixture), so other
tests never see them in the registry.

``test_ledger`` appends one line per event of each execution to a ledger file in the caller's
workspace (``O_APPEND``, one ``write`` of a short line: atomic across processes), so a test can
count executions whatever happened to the worker that ran them.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tasks_app.models import Task
from tools_app.errors import ToolError
from tools_app.registry import Tool, ToolArgs, ToolContext, get_tool, offload, register, unregister
from tools_app.workspace import WorkspacePath

LEDGER = "ledger.log"


class LedgerArgs(ToolArgs):
    key: str
    seconds: float = 0.0
    # Fail the first ``fail_times`` executions (counted from the ledger), with ``retryable``.
    fail_times: int = 0
    retryable: bool = True
    ledger: WorkspacePath = LEDGER


def append_line(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_ledger(path: Path) -> list[tuple[str, str, int, float]]:
    """The ledger's events as (event, key, pid, unix time)."""
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        event, key, pid, at = line.split(" ")
        events.append((event, key, int(pid), float(at)))
    return events


def _starts(path: Path, key: str) -> int:
    return sum(1 for event, k, _, _ in read_ledger(path) if event == "start" and k == key)


class LedgerTool(Tool):
    name = "test_ledger"
    description = "Test only: record each execution in a ledger, sleep, maybe fail."
    Args = LedgerArgs

    async def run(self, args: LedgerArgs, ctx: ToolContext) -> dict[str, Any]:
        path = await offload(ctx.workspace.resolve, args.ledger)

        async def log(event: str) -> None:
            await offload(
                append_line, path, f"{event} {args.key} {os.getpid()} {time.time():.6f}\n"
            )

        await log("start")
        try:
            if args.fail_times and await offload(_starts, path, args.key) <= args.fail_times:
                raise ToolError("flaky", "Failing on purpose.", retryable=args.retryable)
            if args.seconds:
                ctx.report_progress(0, 1, "sleeping")
                await asyncio.sleep(args.seconds)
        except asyncio.CancelledError:
            await asyncio.shield(log("cancelled"))
            raise
        await log("end")
        return {"key": args.key, "pid": os.getpid()}


TEST_TOOLS: list[type[Tool]] = [LedgerTool]


def install() -> None:
    for cls in TEST_TOOLS:
        if get_tool(cls.name) is None:
            register(cls)


def uninstall() -> None:
    for cls in TEST_TOOLS:
        unregister(cls.name)


# --- helpers for in-process tests ---------------------------------------------------------------


@pytest.fixture
def ledger_tools() -> Iterator[None]:
    """The test tools, registered for one test only."""
    install()
    yield
    uninstall()


def ledger_path(username: str) -> Path:
    return Path(settings.CLAWSITE_WORKSPACE_ROOT) / username / LEDGER


def submit(user: Any, **fields: Any) -> Task:
    """Submit one task as the API does (sync: run it on a database thread)."""
    from tasks_app import services

    submission, tool = services.validate_submission(fields, user)
    ((task, _),) = services.submit_tasks(user, [(submission, tool)])
    return task


async def await_task(task_id: str, condition: Any = None, within: float = 30.0) -> Task:
    """Poll the row until ``condition(task)`` holds (default: the task finished); fail after
    ``within`` seconds."""
    (task,) = await await_tasks([task_id], condition, within)
    return task


async def await_tasks(
    task_ids: list[str], condition: Any = None, within: float = 30.0
) -> list[Task]:
    """Poll the rows until ``condition`` holds for each (default: it finished); the tasks come
    back in the order of ``task_ids``. Fail after ``within`` seconds."""
    from tasks_app.db import run_in_db_thread

    condition = condition or (lambda task: task.is_terminal)
    deadline = time.monotonic() + within
    while True:
        found = await run_in_db_thread(lambda: Task.objects.in_bulk(task_ids))
        tasks = [found[i] for i in task_ids if i in found]
        if len(tasks) == len(task_ids) and all(condition(t) for t in tasks):
            return tasks
        if time.monotonic() > deadline:
            raise AssertionError(
                "tasks stuck: "
                + "; ".join(f"{t.id} {t.status} {t.error} {t.attempt_log}" for t in tasks)
            )
        await asyncio.sleep(0.03)


# Imported by name through the setting (the stack tests' processes): register now.
if __name__ in getattr(settings, "CLAWSITE_EXTRA_TOOL_MODULES", []):
    install()
