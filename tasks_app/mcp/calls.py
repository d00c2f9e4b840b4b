"""``tools/call`` and the task methods: every call is a ClawSite task of the caller, created by
the same service as ``POST /api/v1/tasks`` and waited for like ``GET /tasks/<id>?wait=``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..api.views import submit_together
from ..db import run_in_db_thread
from ..errors import ApiError
from ..flow import acheck_api_rate
from ..models import Task, TaskSource
from ..services import cancel_task, validate_submission
from ..store import fetch_task
from ..waiting import await_task
from .protocol import (
    INVALID_PARAMS,
    META_RELATED_TASK,
    SERVER_ERROR,
    McpError,
    Request,
    call_result,
    detailed_task,
    mcp_task,
)

Notify = Callable[[dict[str, Any]], Awaitable[None]]
TASKS_PAGE = 50

# Legacy clients cancel a call by its request id (notifications/cancelled): the calls in flight
# in this process, by (user, session, request id), each with its task id once created.
_in_flight: dict[tuple[Any, str | None, str | int], _Flight] = {}


class _Flight:
    def __init__(self) -> None:
        self.task_id: str | None = None
        self.cancelled = asyncio.Event()
        self.answered = False


# A client abandoning a call may close its stream a moment before its notifications/cancelled
# arrives: the calls left unanswered stay known for a while (task ids by the same key).
ABANDONED_SECONDS = 60.0
_abandoned: dict[tuple[Any, str | None, Any], tuple[float, str]] = {}


def _remember_abandoned(key: tuple[Any, str | None, Any], task_id: str) -> None:
    now = time.monotonic()
    for old in [k for k, (at, _) in _abandoned.items() if at < now - ABANDONED_SECONDS]:
        del _abandoned[old]
    _abandoned[key] = (now, task_id)


def _key(request: Request, request_id: Any) -> tuple[Any, str | None, Any]:
    return (request.user.pk, request.session, request_id)


def _owned_task(user: Any, task_id: Any) -> Task:
    task = fetch_task(task_id, user.pk) if isinstance(task_id, str) else None
    if task is None:
        raise McpError(INVALID_PARAMS, f"No task {task_id!r} of yours.")
    return task


async def _fetch(user: Any, task_id: str) -> Task:
    return await run_in_db_thread(_owned_task, user, task_id)


async def _cancel(user: Any, task_id: str) -> Task | None:
    """Cancel the task; None when it had already finished."""

    def cancel() -> Task | None:
        try:
            return cancel_task(_owned_task(user, task_id), actor=user)
        except ApiError:  # conflict: terminal already
            return None

    return await run_in_db_thread(cancel)


async def _submit(request: Request, name: Any, arguments: Any) -> Task:
    if not isinstance(name, str):
        raise McpError(INVALID_PARAMS, "tools/call needs the tool's name.")
    if arguments is not None and not isinstance(arguments, dict):
        raise McpError(INVALID_PARAMS, "tools/call arguments must be an object.")
    try:
        # The API's per-user rate holds here too; a refusal (rate_limited, queue_full) is a
        # JSON-RPC error whose data is the API's error body, ``retry_after`` in its details.
        await acheck_api_rate(request.user)
        validated = validate_submission({"tool": name, "args": arguments or {}}, request.user)
        [(task, _)] = await submit_together((request.user, [validated], TaskSource.MCP))
    except ApiError as error:
        if error.code in ("unknown_tool", "tool_disabled"):
            raise McpError(INVALID_PARAMS, f"Unknown tool: {name}") from None
        if error.code == "invalid_args":
            raise _InvalidArguments(error) from None
        raise McpError(SERVER_ERROR, error.message, error.as_dict()) from None
    return task


class _InvalidArguments(Exception):
    """Arguments the tool refuses: an ``isError`` result (the model can correct them), no task."""

    def __init__(self, error: ApiError) -> None:
        details = "; ".join(f"{d['loc']}: {d['message']}" for d in error.details or [])
        self.text = f"invalid_args: {error.message} {details}".strip()


async def call_tool(request: Request, notify: Notify, disconnected: asyncio.Event) -> Any:
    params = request.params
    flight = _Flight()
    key = _key(request, request.id) if request.id is not None else None
    if key is not None:
        _in_flight[key] = flight
    try:
        try:
            task = await _submit(request, params.get("name"), params.get("arguments"))
        except _InvalidArguments as invalid:
            return {"content": [{"type": "text", "text": invalid.text}], "isError": True}
        flight.task_id = task.id
        if request.wants_task():
            flight.answered = True
            return _created(task, request)
        result = await _follow(request, task, flight, notify, disconnected)
        flight.answered = True
        return result
    finally:
        if key is not None:
            _in_flight.pop(key, None)
            if flight.task_id is not None and not flight.answered:
                _remember_abandoned(key, flight.task_id)


def _created(task: Task, request: Request) -> dict[str, Any]:
    if request.modern:
        return {**mcp_task(task, modern=True), "resultType": "task"}
    return {"task": mcp_task(task, modern=False)}


async def _follow(
    request: Request, task: Task, flight: _Flight, notify: Notify, disconnected: asyncio.Event
) -> Any:
    """Wait for the task, relaying its progress; stop on a cancel (legacy: the client's
    notifications/cancelled; 2026-07-28: the client closing the stream), cancelling the task."""
    user, token, sent = request.user, request.progress_token, [0.0]

    async def relay(newer: Task) -> None:
        progress = newer.progress if isinstance(newer.progress, dict) else None
        if token is None or not progress:
            return
        done = progress.get("done")
        value = float(done) if isinstance(done, int | float) else sent[0] + 1
        if value <= sent[0]:  # MCP: progress must increase with each notification
            return
        sent[0] = value
        message: dict[str, Any] = {"progressToken": token, "progress": value}
        if isinstance(progress.get("total"), int | float):
            message["total"] = progress["total"]
        if progress.get("message"):
            message["message"] = str(progress["message"])
        await notify({"jsonrpc": "2.0", "method": "notifications/progress", "params": message})

    waiting = asyncio.ensure_future(
        await_task(task, lambda: _fetch(user, task.id), on_change=relay)
    )
    stops = [asyncio.ensure_future(flight.cancelled.wait())]
    if request.modern:
        stops.append(asyncio.ensure_future(disconnected.wait()))
    try:
        await asyncio.wait([waiting, *stops], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for stop in stops:
            stop.cancel()
    if waiting.done():
        return call_result(waiting.result())
    waiting.cancel()
    await _cancel(user, task.id)
    raise Cancelled


class Cancelled(Exception):
    """The client cancelled the request: it gets no answer (the spec)."""


async def cancel_request(request: Request) -> None:
    """``notifications/cancelled``: stop the call it names and cancel its task (also when the
    client left that call's stream just before)."""
    key = _key(request, request.params.get("requestId"))
    flight = _in_flight.get(key)
    if flight is not None:
        flight.cancelled.set()
    elif key in _abandoned:
        await _cancel(request.user, _abandoned.pop(key)[1])


# --- the task methods ----------------------------------------------------------------------------


def _task_id(request: Request) -> str:
    task_id = request.params.get("taskId")
    if not isinstance(task_id, str):
        raise McpError(INVALID_PARAMS, "taskId must be a string.")
    return task_id


async def get_task(request: Request) -> dict[str, Any]:
    task = await _fetch(request.user, _task_id(request))
    return detailed_task(task) if request.modern else mcp_task(task, modern=False)


async def task_result(request: Request) -> dict[str, Any]:
    """2025-11-25 ``tasks/result``: blocks until the task is terminal, then its tool result."""
    user, task_id = request.user, _task_id(request)
    task = await await_task(await _fetch(user, task_id), lambda: _fetch(user, task_id))
    result = call_result(task)
    result["_meta"][META_RELATED_TASK] = {"taskId": task.id}
    return result


async def cancel(request: Request) -> dict[str, Any]:
    user, task_id = request.user, _task_id(request)
    task = await _fetch(user, task_id)
    cancelled = await _cancel(user, task_id)
    if request.modern:
        return {}  # the extension: an acknowledgement; cancellation is cooperative
    if cancelled is None:
        raise McpError(INVALID_PARAMS, f"Cannot cancel a task in terminal status {task.status}.")
    return mcp_task(cancelled, modern=False)


async def update_task(request: Request) -> dict[str, Any]:
    """The extension's ``tasks/update``: ClawSite tasks never ask for input; acknowledged."""
    await _fetch(request.user, _task_id(request))
    return {}


def _list_page(user: Any, offset: int) -> list[Task]:
    tasks = Task.objects.filter(owner=user).order_by("-created_at", "-id")
    return list(tasks[offset : offset + TASKS_PAGE + 1])


async def list_tasks(request: Request) -> dict[str, Any]:
    cursor = request.params.get("cursor")
    if cursor is not None and not (isinstance(cursor, str) and cursor.isdigit()):
        raise McpError(INVALID_PARAMS, "Invalid cursor.")
    offset = int(cursor or 0)
    page = await run_in_db_thread(_list_page, request.user, offset)
    answer: dict[str, Any] = {"tasks": [mcp_task(t, modern=False) for t in page[:TASKS_PAGE]]}
    if len(page) > TASKS_PAGE:
        answer["nextCursor"] = str(offset + TASKS_PAGE)
    return answer
