"""Shared by the client programs (run with the SDK's own venv, never the project's): the steps
a test asks for, run against a live ClawSite, each answer printed as JSON for the test to check.

argv: <url> <token> <steps as JSON>. A step: {"op": ..., ...}; see run_step in each client.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from typing import Any


def args() -> tuple[str, str, list[dict[str, Any]]]:
    return sys.argv[1], sys.argv[2], json.loads(sys.argv[3])


def dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def rest(url: str, token: str, path: str) -> Any:
    """ClawSite's REST API (the test's witness, e.g. that a task is running)."""
    base = url.rsplit("/mcp", 1)[0]
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_running(url: str, token: str, tool: str, timeout: float = 60) -> dict[str, Any]:
    """The caller's newest task of ``tool`` once it is running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = rest(url, token, f"/api/v1/tasks?tool={tool}&status=running&limit=1")["tasks"]
        if tasks:
            return tasks[0]
        time.sleep(0.1)
    raise RuntimeError(f"no {tool} task started running")


def report(results: list[Any]) -> None:
    print(json.dumps(results))
