"""The MCP methods ClawSite answers, per era, and the envelope checks before them."""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from django.core import signing

from tools_app.formats import mcp_tool
from tools_app.registry import all_tools

from . import calls, resources
from .protocol import (
    HEADER_MISMATCH,
    HEADERLESS_VERSION,
    INSTRUCTIONS,
    INVALID_PARAMS,
    INVALID_REQUEST,
    LATEST_LEGACY,
    LEGACY_VERSIONS,
    META_CAPABILITIES,
    META_SERVER_INFO,
    META_VERSION,
    METHOD_NOT_FOUND,
    MODERN_VERSIONS,
    SERVER_INFO,
    SUPPORTED_VERSIONS,
    TASKS_EXTENSION,
    TASKS_VERSION,
    McpError,
    Request,
    unsupported_version,
)

Notify = Callable[[dict[str, Any]], Awaitable[None]]
Handler = Callable[[Request, Notify, asyncio.Event], Awaitable[dict[str, Any]]]
SESSION_SALT = "clawsite.mcp.session"
# 2026-07-28: results a client may cache say for how long; ClawSite's change at any time.
CACHEABLE = {"server/discover", "tools/list", "resources/list", "resources/read"}
NAMED_PARAM = {"tools/call": "name", "resources/read": "uri", "prompts/get": "name"}


def new_session(user: Any) -> str:
    """A legacy session id: signed, so any ClawSite process checks it without a store."""
    return signing.dumps([user.pk, secrets.token_hex(8)], salt=SESSION_SALT, compress=True)


def session_owner(session: str) -> Any:
    try:
        return signing.loads(session, salt=SESSION_SALT)[0]
    except (signing.BadSignature, ValueError, TypeError, IndexError):
        return None


def _capabilities(version: str) -> dict[str, Any]:
    capabilities: dict[str, Any] = {
        "tools": {"listChanged": False},
        "resources": {"subscribe": False, "listChanged": False},
    }
    if version == TASKS_VERSION:
        capabilities["tasks"] = {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
    elif version in MODERN_VERSIONS:
        capabilities["extensions"] = {TASKS_EXTENSION: {}}
    return capabilities


async def initialize(request: Request, notify: Notify, stop: asyncio.Event) -> dict[str, Any]:
    asked = request.params.get("protocolVersion")
    version = asked if asked in LEGACY_VERSIONS else LATEST_LEGACY
    return {
        "protocolVersion": version,
        "capabilities": _capabilities(version),
        "serverInfo": SERVER_INFO,
        "instructions": INSTRUCTIONS,
    }


async def discover(request: Request, notify: Notify, stop: asyncio.Event) -> dict[str, Any]:
    return {
        "supportedVersions": list(SUPPORTED_VERSIONS),
        "capabilities": _capabilities(request.version),
        "instructions": INSTRUCTIONS,
    }


async def empty(request: Request, notify: Notify, stop: asyncio.Event) -> dict[str, Any]:
    return {}


async def list_tools(request: Request, notify: Notify, stop: asyncio.Event) -> dict[str, Any]:
    task_support = request.version == TASKS_VERSION
    tools = [t for t in all_tools() if t.is_enabled(request.user)]
    return {"tools": [mcp_tool(tool, task_support=task_support) for tool in tools]}


async def list_templates(request: Request, notify: Notify, stop: asyncio.Event) -> dict[str, Any]:
    return {"resourceTemplates": [resources.TEMPLATE]}


def _plain(fn: Callable[[Request], Awaitable[dict[str, Any]]]) -> Handler:
    async def handler(request: Request, notify: Notify, stop: asyncio.Event) -> dict[str, Any]:
        return await fn(request)

    return handler


_SHARED: dict[str, Handler] = {
    "tools/list": list_tools,
    "tools/call": calls.call_tool,
    "resources/list": _plain(resources.list_resources),
    "resources/read": _plain(resources.read_resource),
    "resources/templates/list": list_templates,
    "tasks/get": _plain(calls.get_task),
    "tasks/cancel": _plain(calls.cancel),
}
LEGACY_METHODS: dict[str, Handler] = {
    **_SHARED,
    "initialize": initialize,
    "ping": empty,
    "logging/setLevel": empty,
    "tasks/result": _plain(calls.task_result),
    "tasks/list": _plain(calls.list_tasks),
}
MODERN_METHODS: dict[str, Handler] = {
    **_SHARED,
    "server/discover": discover,
    "tasks/update": _plain(calls.update_task),
}


def read_envelope(
    message: dict[str, Any], headers: Mapping[str, str], user: Any, session: str | None
) -> Request:
    """The request's era and revision, checked as the spec says; raises McpError."""
    method, params = message["method"], message.get("params")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise McpError(INVALID_REQUEST, "params must be an object.")
    meta = params.get("_meta")
    header_version = headers.get("mcp-protocol-version")
    if isinstance(meta, dict) and META_VERSION in meta and method != "initialize":
        return _modern(message, params, meta, headers, user)
    if header_version in MODERN_VERSIONS or method == "server/discover":
        raise McpError(
            INVALID_PARAMS,
            f"A {MODERN_VERSIONS[-1]} request carries {META_VERSION} and {META_CAPABILITIES} "
            "in params._meta.",
            status=400,
        )
    version = header_version or HEADERLESS_VERSION
    if method == "initialize":
        version = LATEST_LEGACY
    elif version not in LEGACY_VERSIONS:
        raise unsupported_version(version)
    return Request(user, method, params, message.get("id"), version, session)


def _modern(
    message: dict[str, Any],
    params: dict[str, Any],
    meta: dict[str, Any],
    headers: Mapping[str, str],
    user: Any,
) -> Request:
    version, method = meta[META_VERSION], message["method"]
    capabilities = meta.get(META_CAPABILITIES, {})
    if not isinstance(capabilities, dict):
        raise McpError(INVALID_PARAMS, f"{META_CAPABILITIES} must be an object.")
    if headers.get("mcp-protocol-version") != version:
        raise _mismatch("MCP-Protocol-Version does not match the request's protocol version.")
    if headers.get("mcp-method") != method:
        raise _mismatch("Mcp-Method does not match the request's method.")
    named = NAMED_PARAM.get(method)
    if named is not None and params.get(named) is not None:
        if _decode_header(headers.get("mcp-name")) != params[named]:
            raise _mismatch(f"Mcp-Name does not match the request's {named}.")
    if not isinstance(version, str):
        raise McpError(INVALID_PARAMS, f"{META_VERSION} must be a string.", status=400)
    if version not in MODERN_VERSIONS:
        raise unsupported_version(version)
    return Request(user, method, params, message.get("id"), version, None, capabilities)


def _mismatch(message: str) -> McpError:
    return McpError(HEADER_MISMATCH, f"Header mismatch: {message}", status=400)


def _decode_header(value: str | None) -> str | None:
    """``=?base64?...?=`` values (non-ASCII names) decoded, as the transport spec says."""
    if value is None or not (value.startswith("=?base64?") and value.endswith("?=")):
        return value
    try:
        return base64.b64decode(value[9:-2], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


async def dispatch(request: Request, notify: Notify, stop: asyncio.Event) -> dict[str, Any]:
    methods = MODERN_METHODS if request.modern else LEGACY_METHODS
    handler = methods.get(request.method)
    if handler is None:
        # 2026-07-28: an unknown method is also an HTTP 404 (so clients tell it from a wrong URL).
        status = 404 if request.modern else 200
        raise McpError(METHOD_NOT_FOUND, f"Method not found: {request.method}", status=status)
    result = await handler(request, notify, stop)
    if request.modern:
        result = {**result, "resultType": result.get("resultType", "complete")}
        result["_meta"] = {**result.get("_meta", {}), META_SERVER_INFO: SERVER_INFO}
        if request.method in CACHEABLE:
            result.update(ttlMs=0, cacheScope="private")
    return result
