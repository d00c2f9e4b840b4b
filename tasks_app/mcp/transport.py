"""``/mcp``: MCP's Streamable HTTP transport as a plain ASGI app inside ClawSite's daphne.

One POST carries one JSON-RPC message. A request is answered with JSON, or with an SSE stream
(its progress notifications, then its answer) when the client accepts one and the method can
take a while (``tools/call``, ``tasks/result``). Authentication is the API's Bearer token.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from ..api.base import _users_together
from ..auth import bearer_token
from ..events import bind_event_loop
from .calls import Cancelled, cancel_request
from .protocol import INTERNAL_ERROR, INVALID_REQUEST, PARSE_ERROR, McpError, Request
from .server import dispatch, new_session, read_envelope, session_owner

logger = logging.getLogger(__name__)

STREAMED = {"tools/call", "tasks/result"}
KEEPALIVE_SECONDS = 15.0
SESSION_HEADER = "mcp-session-id"


class _Reply:
    """The HTTP answer to one POST: JSON, or an SSE stream started on its first message."""

    def __init__(self, send: Any, stream: bool) -> None:
        self.send, self.stream, self.started = send, stream, False
        self.lock = asyncio.Lock()

    async def start(self, status: int, content_type: str, extra: list[tuple[bytes, bytes]]) -> None:
        headers = [(b"content-type", content_type.encode()), (b"cache-control", b"no-store")]
        if content_type == "text/event-stream":
            headers.append((b"x-accel-buffering", b"no"))
        await self.send(
            {"type": "http.response.start", "status": status, "headers": headers + extra}
        )
        self.started = True

    async def open(self) -> None:
        """Start the SSE stream now (a call that may take long: the client sees its answer
        begin, and keep-alive comments flow until the answer)."""
        async with self.lock:
            if not self.started:
                await self.start(200, "text/event-stream", [])

    async def notify(self, message: dict[str, Any]) -> None:
        """A notification before the answer: only an SSE stream can carry one."""
        if self.stream:
            await self._event(json.dumps(message).encode(), more=True)

    async def keepalive(self) -> None:
        if self.stream and self.started:
            async with self.lock:
                await self._body(b": keepalive\n\n", more=True)

    async def finish(
        self,
        message: dict[str, Any],
        status: int = 200,
        extra: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        body = json.dumps(message).encode()
        if self.stream and (self.started or status == 200):
            await self._event(body, more=False, extra=list(extra))
            return
        if self.started:  # cannot happen: a JSON answer starts here
            return
        await self.start(status, "application/json", list(extra))
        await self._body(body, more=False)

    async def close(self) -> None:
        """End a stream without an answer (a cancelled request gets none)."""
        if self.started:
            await self._body(b"", more=False)
        else:
            await self.start(202, "application/json", [])
            await self._body(b"", more=False)

    async def _event(self, data: bytes, *, more: bool, extra: list[Any] | None = None) -> None:
        async with self.lock:
            if not self.started:
                await self.start(200, "text/event-stream", extra or [])
            await self._body(b"event: message\ndata: " + data + b"\n\n", more=more)

    async def _body(self, data: bytes, *, more: bool) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": more})


def _error(message_id: Any, error: McpError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": message_id, "error": error.as_error()}


async def _plain(
    send: Any, status: int, error: McpError | None, headers: Sequence[Any] = ()
) -> None:
    body = json.dumps(_error(None, error)).encode() if error else b""
    extra = [(b"content-type", b"application/json")] if error else []
    await send({"type": "http.response.start", "status": status, "headers": extra + list(headers)})
    await send({"type": "http.response.body", "body": body})


def _allowed_hosts() -> list[str]:
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]  # Django's own default under DEBUG
    return list(allowed)


def _host_allowed(host: str) -> bool:
    domain, _ = split_domain_port(host)
    return bool(domain) and validate_host(domain, _allowed_hosts())


def _origin_allowed(origin: str) -> bool:
    """Against DNS rebinding: a browser's Origin must name one of ALLOWED_HOSTS (as Channels'
    origin validator does for cookie websockets). Agents send no Origin."""
    host = urlsplit(origin).hostname if origin != "null" else None
    return host is not None and host != "" and validate_host(host, _allowed_hosts())


async def _read_body(receive: Any) -> bytes | None:
    """The request body, or None past CLAWSITE_MAX_BODY_BYTES (or when the client left)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > settings.CLAWSITE_MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _parse(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise McpError(PARSE_ERROR, "Parse error: the body is not JSON.", status=400) from None
    if not isinstance(message, dict):
        raise McpError(INVALID_REQUEST, "One JSON-RPC message (an object) per POST.", status=400)
    message_id = message.get("id")
    valid_id = "id" not in message or (
        isinstance(message_id, str | int) and not isinstance(message_id, bool)
    )
    if message.get("jsonrpc") != "2.0" or not valid_id:
        raise McpError(INVALID_REQUEST, "Not a JSON-RPC 2.0 message.", status=400)
    if "method" in message and not isinstance(message["method"], str):
        raise McpError(INVALID_REQUEST, "method must be a string.", status=400)
    return message


async def mcp_application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    bind_event_loop()
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    if not _host_allowed(headers.get("host", "")):  # what Django checks for every other path
        return await _plain(send, 400, McpError(INVALID_REQUEST, "Host not allowed."))
    origin = headers.get("origin")
    if origin is not None and not _origin_allowed(origin):
        return await _plain(send, 403, McpError(INVALID_REQUEST, "Origin not allowed."))
    raw = bearer_token(headers)
    user = await _users_together(raw) if raw else None
    if user is None:
        challenge = [(b"www-authenticate", b'Bearer realm="clawsite"')]
        error = McpError(INVALID_REQUEST, "Authentication required: a Bearer API token.")
        return await _plain(send, 401, error, challenge)
    if scope["method"] != "POST":
        # No server-initiated stream (GET) and no session to delete (DELETE): the spec's 405.
        return await _plain(send, 405, None, [(b"allow", b"POST")])
    body = await _read_body(receive)
    if body is None:
        return await _plain(send, 413, McpError(INVALID_REQUEST, "The body is too large."))
    try:
        message = _parse(body)
    except McpError as error:
        return await _plain(send, error.status, error)
    await _answer(message, headers, user, receive, send)


async def _answer(
    message: dict[str, Any], headers: dict[str, str], user: Any, receive: Any, send: Any
) -> None:
    session = headers.get(SESSION_HEADER)
    if session is not None and session_owner(session) != user.pk:
        # Not one of this user's sessions (forged, or another user's): as an unknown one.
        return await _plain(send, 404, McpError(INVALID_REQUEST, "Session not found."))
    message_id = message.get("id")
    if "method" not in message:
        if "result" in message or "error" in message:
            return await _plain(send, 202, None)  # a response from the client: none was asked
        return await _plain(send, 400, McpError(INVALID_REQUEST, "Not a request."))
    accept = headers.get("accept", "")
    sse = "text/event-stream" in accept
    json_ok = "application/json" in accept or "*/*" in accept or not accept
    if not (sse or json_ok):
        error = McpError(INVALID_REQUEST, "Accept application/json or text/event-stream.")
        return await _plain(send, 406, error)
    try:
        request = read_envelope(message, headers, user, session)
    except McpError as error:
        if message_id is None:
            return await _plain(send, error.status if error.status != 200 else 400, error)
        return await _Reply(send, False).finish(_error(message_id, error), error.status)
    if message_id is None:
        if request.method == "notifications/cancelled":
            await cancel_request(request)
        return await _plain(send, 202, None)
    reply = _Reply(send, sse and (request.method in STREAMED or not json_ok))
    extra = []
    if request.method == "initialize":
        extra = [(SESSION_HEADER.encode(), new_session(user).encode())]
    await _run(request, reply, receive, extra)


async def _run(request: Request, reply: _Reply, receive: Any, extra: list[Any]) -> None:
    """Answer the request; meanwhile keep an SSE stream alive and watch for the client leaving
    (2026-07-28: that cancels the request; legacy: the task goes on, nobody waits for it)."""
    disconnected = asyncio.Event()
    if reply.stream and request.method in STREAMED:
        await reply.open()
    handling = asyncio.ensure_future(dispatch(request, reply.notify, disconnected))

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnected.set()
        if not request.modern:
            handling.cancel()

    async def keep_alive() -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_SECONDS)
            await reply.keepalive()

    helpers = [asyncio.ensure_future(watch()), asyncio.ensure_future(keep_alive())]
    try:
        result = await handling
        await reply.finish({"jsonrpc": "2.0", "id": request.id, "result": result}, 200, extra)
    except McpError as error:
        await reply.finish(_error(request.id, error), error.status)
    except Cancelled:
        if not disconnected.is_set():
            await reply.close()
    except asyncio.CancelledError:
        if not handling.cancelled() or not disconnected.is_set():
            raise  # daphne cancelled this request, not the client leaving
    except Exception:
        logger.exception("MCP %s failed", request.method)
        await reply.finish(_error(request.id, McpError(INTERNAL_ERROR, "Internal error.")))
    finally:
        for helper in helpers:
            helper.cancel()
