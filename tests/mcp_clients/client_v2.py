"""The official MCP Python SDK, 2.x line, as ClawSite's client: ``Client`` over
``streamable_http_client`` with an HTTP client carrying the Bearer header (the README's recipe).
``mode`` from the environment: "auto" (2026-07-28, found by server/discover) or "legacy"."""

from __future__ import annotations

import os
from typing import Any

import anyio
from common import args, report, run_shared_step, wait_running
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError


async def run_step(client: Client, url: str, token: str, step: dict[str, Any]) -> Any:
    shared = await run_shared_step(client, step, MCPError)
    if shared is not None:
        return shared
    op = step["op"]
    if op == "cancel":
        # Abandoning the call: 2026-07-28 closes its stream; legacy sends notifications/cancelled.
        async with anyio.create_task_group() as group:
            group.start_soon(client.call_tool, step["name"], step["args"])
            running = await anyio.to_thread.run_sync(wait_running, url, token, step["name"])
            group.cancel_scope.cancel()
        return {"task_id": running["id"]}
    raise ValueError(f"unknown op {op!r}")


async def main() -> None:
    url, token, steps = args()
    mode = os.environ.get("MCP_CLIENT_MODE", "auto")
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        results: list[Any] = [{"protocolVersion": client.protocol_version}]
        for step in steps:
            results.append(await run_step(client, url, token, step))
    report(results)


anyio.run(main)
