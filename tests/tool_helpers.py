"""Helpers for the tool and cache tests: run a tool as a persona, in-process (the ``ws`` fixture,
Alice's workspace, is in conftest.py)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tools_app.errors import ToolError
from tools_app.runner import ToolOutcome, ToolOwner, run_tool

ALICE = ToolOwner(1, "alice")
ALICE_EVIL = ToolOwner(3, "alice_evil")

# Tests shrink the "racily clean" window so they need not wait 2 s: the rule stays the same
# (nothing changed within the window is cached), and the window stays far above a timestamp tick.
TEST_RACY_SECONDS = 0.05


def workspace_of(owner: ToolOwner = ALICE) -> Path:
    return Path(settings.CLAWSITE_WORKSPACE_ROOT) / owner.username


async def run(
    name: str,
    args: dict[str, Any],
    owner: ToolOwner = ALICE,
    task_timeout: float = 30.0,
    progress: Any = None,
) -> ToolOutcome:
    return await run_tool(name, args, owner, timeout=task_timeout, report_progress=progress)


async def fails(
    name: str, args: dict[str, Any], owner: ToolOwner = ALICE, task_timeout: float = 30.0
) -> ToolError:
    with pytest.raises(ToolError) as caught:
        await run(name, args, owner, task_timeout)
    return caught.value


async def settle(*paths: Path) -> None:
    """Wait until every path's timestamps are older than the racy window (a wait on time itself)."""
    while True:
        newest = max(max(os.stat(p).st_mtime_ns, os.stat(p).st_ctime_ns) for p in paths)
        if time.time_ns() - newest > settings.CLAWSITE_CACHE_RACY_SECONDS * 1e9:
            return
        await asyncio.sleep(0.01)


def prepare_workspace(settings: Any) -> Path:
    """Alice's workspace, created, with the cache's racy window shrunk for tests (each test
    module wraps this in its ``ws`` fixture)."""
    settings.CLAWSITE_CACHE_RACY_SECONDS = TEST_RACY_SECONDS
    root = workspace_of(ALICE)
    root.mkdir(parents=True, exist_ok=True)
    return root
