"""The official MCP Python SDK, 1.x line, as ClawSite's client: ``streamablehttp_client`` with
``headers=`` (the README's recipe), the initialize handshake, its experimental task API."""

from __future__ import annotations

from typing import Any

import anyio
import mcp.types as types
from common import args, dump, report, wait_running
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client
from mcp.shared.exceptions import McpError


async def run_step(session: ClientSession, url: str, token: str, step: dict[str, Any]) -> Any:
    op = step["op"]
    if op == "list_tools":
        return [dump(tool) for tool in (await session.list_tools()).tools]
    if op == "call":
        progress: list[Any] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append({"progress": value, "total": total, "message": message})

        callback = on_progress if step.get("progress") else None
        try:
            result = await session.call_tool(
                step["name"], step.get("args"), progress_callback=callback
            )
        except McpError as error:
            return {"error": dump(error.error)}
        return {"result": dump(result), "progress": progress}
    if op == "concurrent":
        results: list[Any] = [None] * step["n"]

        async def one(index: int) -> None:
            call = {"op": "call", "name": step["name"], "args": step["args"]}
            results[index] = await run_step(session, url, token, call)

        async with anyio.create_task_group() as group:
            for index in range(step["n"]):
                group.start_soon(one, index)
        return results
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
    if op == "list_resources":
        return [dump(r) for r in (await session.list_resources()).resources]
    if op == "read_resource":
        try:
            return dump(await session.read_resource(step["uri"]))
        except McpError as error:
            return {"error": dump(error.error)}
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
