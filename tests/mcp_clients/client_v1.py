"""The official MCP Python SDK, 1.x line, as ClawSite's client: ``streamablehttp_client`` with
``headers=`` (the README's recipe), the initialize handshake, its experimental task API."""

from __future__ import annotations

from typing import Any

import anyio
import mcp.types as types
from common import args, dump, report, run_shared_step, wait_running
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client
from mcp.shared.exceptions import McpError


async def run_step(session: ClientSession, url: str, token: str, step: dict[str, Any]) -> Any:
    shared = await run_shared_step(session, step, McpError)
    if shared is not None:
        return shared
    op = step["op"]
    if op == "cancel":
        # 1.x sends no cancellation by itself: the notification, by the request's id, as the spec says.
        request_id = session._request_id  # the id the next request gets
        async with anyio.create_task_group() as group:
            group.start_soon(session.call_tool, step["name"], step["args"])
            running = await anyio.to_thread.run_sync(wait_running, url, token, step["name"])
            await session.send_notification(
                types.ClientNotification(
                    types.CancelledNotification(
                        params=types.CancelledNotificationParams(
                            requestId=request_id, reason="test"
                        )
                    )
                )
            )
            group.cancel_scope.cancel()
        return {"task_id": running["id"]}
    if op == "call_as_task":
        tasks = session.experimental
        created = await tasks.call_tool_as_task(step["name"], step.get("args"))
        task_id = created.task.taskId
        first = await tasks.get_task(task_id)
        result = await tasks.get_task_result(task_id, types.CallToolResult)
        final = await tasks.get_task(task_id)
        listed = [t.taskId for t in (await tasks.list_tasks()).tasks]
        return {
            "created": dump(created),
            "first": dump(first),
            "result": dump(result),
            "final": dump(final),
            "listed": task_id in listed,
        }
    if op == "cancel_task":
        tasks = session.experimental
        created = await tasks.call_tool_as_task(step["name"], step.get("args"))
        await anyio.to_thread.run_sync(wait_running, url, token, step["name"])
        cancelled = await tasks.cancel_task(created.task.taskId)
        async for status in tasks.poll_task(created.task.taskId):
            final = status
        return {"cancelled": dump(cancelled), "final": dump(final)}
    raise ValueError(f"unknown op {op!r}")


async def main() -> None:
    url, token, steps = args()
    headers = {"Authorization": f"Bearer {token}"}
    async with streamablehttp_client(url, headers=headers) as (read, write, session_id):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            results: list[Any] = [
                {"protocolVersion": init.protocolVersion, "session": session_id() is not None}
            ]
            for step in steps:
                results.append(await run_step(session, url, token, step))
    report(results)


anyio.run(main)
