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

import anyio


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


async def run_shared_step(peer: Any, step: dict[str, Any], error_type: type[Exception]) -> Any:
    """The steps both SDK lines take alike (a 1.x ``ClientSession`` and a 2.x ``Client`` have
    the same methods for them); ``None`` for a step the client program handles itself."""
    op = step["op"]
    if op == "list_tools":
        return [dump(tool) for tool in (await peer.list_tools()).tools]
    if op == "call":
        progress: list[Any] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append({"progress": value, "total": total, "message": message})

        callback = on_progress if step.get("progress") else None
        try:
            result = await peer.call_tool(
                step["name"], step.get("args"), progress_callback=callback
            )
        except error_type as error:
            return {"error": dump(error.error)}  # type: ignore[attr-defined]
        return {"result": dump(result), "progress": progress}
    if op == "concurrent":
        results: list[Any] = [None] * step["n"]

        async def one(index: int) -> None:
            call = {"op": "call", "name": step["name"], "args": step["args"]}
            results[index] = await run_shared_step(peer, call, error_type)

        async with anyio.create_task_group() as group:
            for index in range(step["n"]):
                group.start_soon(one, index)
        return results
    if op == "list_resources":
        return [dump(r) for r in (await peer.list_resources()).resources]
    if op == "read_resource":
        try:
            return dump(await peer.read_resource(step["uri"]))
        except error_type as error:
            return {"error": dump(error.error)}  # type: ignore[attr-defined]
    return None
