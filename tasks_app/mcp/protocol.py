"""The Model Context Protocol's vocabulary as ClawSite speaks it: revisions, error codes, and
the shapes a ClawSite task takes in MCP (a tool result, an MCP task).

Two eras share the endpoint (the 2026-07-28 revision's "dual-era server"): legacy revisions
open with an ``initialize`` handshake; 2026-07-28 ("modern") is stateless, every request
carrying its revision and the client's capabilities in ``params._meta``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..models import Task, TaskStatus
from ..serializers import isoformat

LEGACY_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
MODERN_VERSIONS = ("2026-07-28",)
SUPPORTED_VERSIONS = LEGACY_VERSIONS + MODERN_VERSIONS
LATEST_LEGACY = "2025-11-25"
# A request without MCP-Protocol-Version comes from a client older than 2025-06-18 (the spec).
HEADERLESS_VERSION = "2025-03-26"
TASKS_VERSION = "2025-11-25"  # the legacy revision with task-augmented calls
TASKS_EXTENSION = "io.modelcontextprotocol/tasks"

META_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"
META_RELATED_TASK = "io.modelcontextprotocol/related-task"
META_TASK_ID = "clawsite/task_id"

SERVER_INFO = {"name": "clawsite", "title": "ClawSite", "version": "1.0"}
INSTRUCTIONS = (
    "ClawSite runs each tool call as a durable task in your workspace: retried when a worker "
    "dies, cancellable, visible in ClawSite's web pages. Paths are relative to the workspace."
)
POLL_INTERVAL_MS = 500

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000  # ClawSite refused the work (e.g. a limit): data carries the API error
RESOURCE_NOT_FOUND = -32002  # legacy revisions; 2026-07-28 uses INVALID_PARAMS
HEADER_MISMATCH = -32020
UNSUPPORTED_PROTOCOL_VERSION = -32022


class McpError(Exception):
    """A JSON-RPC error answer; ``status`` is the HTTP status it travels with."""

    def __init__(self, code: int, message: str, data: Any = None, status: int = 200) -> None:
        super().__init__(message)
        self.code, self.message, self.data, self.status = code, message, data, status

    def as_error(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def unsupported_version(requested: Any) -> McpError:
    return McpError(
        UNSUPPORTED_PROTOCOL_VERSION,
        "Unsupported protocol version",
        {"supported": list(SUPPORTED_VERSIONS), "requested": requested},
        status=400,
    )


@dataclass
class Request:
    """One JSON-RPC request or notification, and who sent it under which revision."""

    user: Any
    method: str
    params: dict[str, Any]
    id: str | int | None
    version: str
    session: str | None = None
    capabilities: dict[str, Any] = field(default_factory=dict)

    @property
    def modern(self) -> bool:
        return self.version in MODERN_VERSIONS

    @property
    def progress_token(self) -> str | int | None:
        meta = self.params.get("_meta")
        token = meta.get("progressToken") if isinstance(meta, dict) else None
        return token if isinstance(token, str | int) and not isinstance(token, bool) else None

    def wants_task(self) -> bool:
        """Task-augmented execution: 2025-11-25's ``task`` parameter, or the tasks extension
        among a 2026-07-28 request's capabilities (then the server decides: ClawSite always
        answers a task at once, its tasks being durable)."""
        if self.modern:
            extensions = self.capabilities.get("extensions")
            return isinstance(extensions, dict) and TASKS_EXTENSION in extensions
        return self.version == TASKS_VERSION and isinstance(self.params.get("task"), dict)


def result_text(result: Any) -> str:
    return json.dumps(result, ensure_ascii=False, indent=2)


def error_text(task: Task) -> str:
    error = task.error or {}
    kind = error.get("type") or str(task.status)
    return f"{kind}: {error.get('message') or f'the task was {task.status}'}"


def call_result(task: Task) -> dict[str, Any]:
    """A terminal task as MCP's ``CallToolResult``."""
    meta = {META_TASK_ID: task.id}
    if task.status == TaskStatus.SUCCEEDED:
        return {
            "content": [{"type": "text", "text": result_text(task.result)}],
            "structuredContent": task.result,
            "isError": False,
            "_meta": meta,
        }
    return {"content": [{"type": "text", "text": error_text(task)}], "isError": True, "_meta": meta}


MCP_STATUS = {
    TaskStatus.QUEUED: "working",
    TaskStatus.RUNNING: "working",
    TaskStatus.SUCCEEDED: "completed",
    TaskStatus.FAILED: "failed",
    TaskStatus.CANCELLED: "cancelled",
}


def status_message(task: Task) -> str:
    if task.is_terminal:
        return error_text(task) if task.status != TaskStatus.SUCCEEDED else "succeeded"
    progress = task.progress or {}
    message = progress.get("message") if isinstance(progress, dict) else None
    return f"{task.status}: {message}" if message else str(task.status)


def mcp_task(task: Task, *, modern: bool) -> dict[str, Any]:
    """A ClawSite task as an MCP ``Task`` (its ``taskId`` is the ClawSite id). The revisions
    name the timings differently; ClawSite keeps tasks until they are pruned (no TTL)."""
    updated = task.finished_at or task.started_at or task.created_at
    shape: dict[str, Any] = {
        "taskId": task.id,
        "status": MCP_STATUS[TaskStatus(task.status)],
        "statusMessage": status_message(task),
        "createdAt": isoformat(task.created_at),
        "lastUpdatedAt": isoformat(updated),
    }
    if modern:
        shape.update(ttlMs=None, pollIntervalMs=POLL_INTERVAL_MS)
    else:
        shape.update(ttl=None, pollInterval=POLL_INTERVAL_MS)
    return shape


def detailed_task(task: Task) -> dict[str, Any]:
    """The 2026-07-28 extension's ``tasks/get`` answer: the task with its outcome inline."""
    shape = mcp_task(task, modern=True)
    if task.status == TaskStatus.SUCCEEDED:
        shape["result"] = {**call_result(task), "resultType": "complete"}
    elif task.status == TaskStatus.FAILED:
        shape["error"] = {"code": SERVER_ERROR, "message": error_text(task), "data": task.error}
    return shape
