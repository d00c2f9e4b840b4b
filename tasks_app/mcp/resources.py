"""The caller's workspace files as MCP resources (``clawsite://workspace/<path>``), listed and
read by the ``list_directory`` and ``read_file`` tools themselves (in this process, not as
tasks): the same sandbox, path checks and cache as any call of those tools."""

from __future__ import annotations

import base64
import mimetypes
from typing import Any
from urllib.parse import quote, unquote

from tools_app.errors import ToolError
from tools_app.registry import offload
from tools_app.runner import ToolOwner, run_tool
from tools_app.tools.read_file import MAX_READ_BYTES
from tools_app.workspace import Workspace, check_relative_path

from .protocol import INVALID_PARAMS, RESOURCE_NOT_FOUND, McpError, Request

URI_PREFIX = "clawsite://workspace/"
PAGE = 500
TEMPLATE = {
    "uriTemplate": URI_PREFIX + "{+path}",
    "name": "workspace-file",
    "title": "A file of your ClawSite workspace",
    "description": "Paths are relative to the workspace, as the file tools take them.",
}


def _owner(user: Any) -> ToolOwner:
    return ToolOwner(id=user.pk, username=user.get_username(), is_staff=user.is_staff)


def _uri(path: str) -> str:
    return URI_PREFIX + quote(path)


def _mime(path: str) -> str:
    return mimetypes.guess_type(path)[0] or "text/plain"


async def list_resources(request: Request) -> dict[str, Any]:
    cursor = request.params.get("cursor")
    if cursor is not None and not (isinstance(cursor, str) and cursor.isdigit()):
        raise McpError(INVALID_PARAMS, "Invalid cursor.")
    offset = int(cursor or 0)
    try:
        listing = await run_tool(
            "list_directory", {"path": ".", "recursive": True}, _owner(request.user)
        )
    except ToolError as error:
        raise McpError(INVALID_PARAMS, f"{error.type}: {error}") from None
    files = sorted(
        (e for e in listing.result["entries"] if e["type"] == "file"), key=lambda e: e["path"]
    )
    page = files[offset : offset + PAGE]
    answer: dict[str, Any] = {
        "resources": [
            {
                "uri": _uri(entry["path"]),
                "name": entry["path"],
                "mimeType": _mime(entry["path"]),
                "size": entry["size"],
            }
            for entry in page
        ]
    }
    if offset + PAGE < len(files):
        answer["nextCursor"] = str(offset + PAGE)
    return answer


def _path_of(uri: Any) -> str:
    if not isinstance(uri, str) or not uri.startswith(URI_PREFIX):
        raise McpError(INVALID_PARAMS, f"Resources are {URI_PREFIX}<path> URIs.")
    path = unquote(uri.removeprefix(URI_PREFIX))
    try:
        return check_relative_path(path)  # refused before reading, as the tools refuse it
    except ValueError as error:
        raise McpError(INVALID_PARAMS, f"invalid_path: {error}", {"uri": uri}) from None


async def read_resource(request: Request) -> dict[str, Any]:
    uri = request.params.get("uri")
    path = _path_of(uri)
    owner = _owner(request.user)
    try:
        outcome = await run_tool("read_file", {"path": path}, owner)
        content = {"uri": uri, "mimeType": _mime(path), "text": outcome.result["content"]}
    except ToolError as error:
        if error.type != "binary_file":
            raise _not_readable(request, uri, error) from None
        content = {"uri": uri, "mimeType": _mime(path), "blob": await _read_blob(owner, path)}
    return {"contents": [content]}


def _not_readable(request: Request, uri: Any, error: ToolError) -> McpError:
    code = (
        RESOURCE_NOT_FOUND if error.type == "not_found" and not request.modern else INVALID_PARAMS
    )
    return McpError(code, f"{error.type}: {error}", {"uri": uri})


async def _read_blob(owner: ToolOwner, path: str) -> str:
    """A file that is not text, base64: through the workspace's own check (resolve)."""

    def read() -> bytes:
        with open(Workspace.for_user(owner).resolve(path), "rb") as handle:
            return handle.read(MAX_READ_BYTES)

    return base64.b64encode(await offload(read)).decode()
