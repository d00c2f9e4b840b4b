"""http_fetch and llm_chat against a local HTTP server on 127.0.0.1 (the internet and a real LLM
cannot exist here): the server speaks plain HTTP/1.1 and the OpenAI streaming protocol."""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import json
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tools_app.tools import http_fetch

from .tool_helpers import fails, run

pytestmark = pytest.mark.timeout(60)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    local_address: str


@dataclass
class LocalServer:
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    server: asyncio.Server | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)  # ends the /slow answers

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, path, _ = head[0].split(" ", 2)
            headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in head[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", 0)))
            request = Request(method, path, headers, body, writer.get_extra_info("sockname")[0])
            self.requests.append(request)
            await self.respond(request, writer)
        finally:
            writer.close()

    async def respond(self, request: Request, writer: asyncio.StreamWriter) -> None:
        def send(
            status: str, body: bytes, *extra: str, content_type: str = "text/plain; charset=utf-8"
        ) -> None:
            lines = [
                f"HTTP/1.1 {status}",
                f"Content-Type: {content_type}",
                f"Content-Length: {len(body)}",
                "Connection: close",
                *extra,
            ]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

        if request.path == "/hello":
            send("200 OK", b"hello", "X-Test: yes")
        elif request.path == "/big":
            send("200 OK", b"x" * 100_000)
        elif request.path.startswith("/redirect?"):
            send("302 Found", b"", f"Location: {request.path.split('?to=', 1)[1]}")
        elif request.path == "/loop":
            send("302 Found", b"", "Location: /loop")
        elif request.path in ("/gzip-bomb", "/deflate", "/raw-deflate", "/nul"):
            send(*_encoded(request.path))
        elif request.path == "/slow":
            await self.release.wait()
        elif request.path == "/v1/chat/completions":
            await self.chat(request, writer)
        elif request.path == "/broken/v1/chat/completions":
            send(
                "503 Service Unavailable",
                b'{"error": "overloaded"}',
                content_type="application/json",
            )
        else:
            send("404 Not Found", b"no")
        await writer.drain()

    async def chat(self, request: Request, writer: asyncio.StreamWriter) -> None:
        """The OpenAI streaming protocol: SSE chunks with deltas, a usage chunk, [DONE]."""
        asked = json.loads(request.body)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
        )
        model = asked.get("model") or "local-model"
        for piece in ["Hel", "lo", ", ", "world"]:
            chunk = {
                "id": "c1",
                "object": "chat.completion.chunk",
                "model": model,
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
            writer.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await writer.drain()
        writer.write(b": keep-alive comment\n\n")
        usage = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
        final: dict[str, Any] = {"id": "c1", "model": model, "choices": [], "usage": usage}
        writer.write(f"data: {json.dumps(final)}\n\ndata: [DONE]\n\n".encode())


# 50 MB of zeros: ~50 KB gzipped (a bomb: the old code inflated each network chunk whole).
BOMB_SIZE = 50_000_000


def _encoded(path: str) -> tuple[str, bytes, str]:
    if path == "/gzip-bomb":
        return "200 OK", gzip.compress(b"\0" * BOMB_SIZE, 9), "Content-Encoding: gzip"
    if path == "/deflate":
        return "200 OK", zlib.compress(b"deflated " * 100), "Content-Encoding: deflate"
    if path == "/raw-deflate":
        squeeze = zlib.compressobj(wbits=-15)
        body = squeeze.compress(b"raw " * 100) + squeeze.flush()
        return "200 OK", body, "Content-Encoding: deflate"
    return "200 OK", b"a\0b", "X-Nul: yes"


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    local = LocalServer()
    local.server = await asyncio.start_server(local.handle, "127.0.0.1", 0)
    local.port = local.server.sockets[0].getsockname()[1]
    yield local
    local.release.set()
    local.server.close()


# --- http_fetch ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1",
        "172.16.3.4",
        "192.168.1.1",
        "127.0.0.1",
        "169.254.169.254",
        "100.100.100.200",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fd00:ec2::254",
        "ff02::1",
        "::ffff:127.0.0.1",
        "64:ff9b::a9fe:a9fe",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not http_fetch.address_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert http_fetch.address_allowed(ipaddress.ip_address(address))


async def test_local_server_is_refused_by_default(ws: Any, server: LocalServer) -> None:
    for url in (server.url("/hello"), server.url("/hello", host="localhost")):
        error = await fails("http_fetch", {"url": url})
        assert error.type == "address_not_allowed"
    assert server.requests == []  # refused before connecting


async def test_local_server_is_reached_with_the_setting(
    ws: Any, server: LocalServer, settings: Any
) -> None:
    settings.CLAWSITE_HTTP_ALLOW_PRIVATE = True
    result = (
        await run("http_fetch", {"url": server.url("/hello"), "headers": {"X-Asked": "1"}})
    ).result
    assert result["status"] == 200 and result["body"] == "hello" and result["truncated"] is False
    assert result["headers"]["x-test"] == "yes"
    assert server.requests[0].headers["host"] == f"127.0.0.1:{server.port}"
    assert server.requests[0].headers["x-asked"] == "1"
    named = (await run("http_fetch", {"url": server.url("/hello", host="localhost")})).result
    assert (
        named["status"] == 200 and server.requests[1].headers["host"] == f"localhost:{server.port}"
    )


async def test_every_redirect_is_checked(ws: Any, server: LocalServer, monkeypatch: Any) -> None:
    # 127.0.0.1 plays a public address here; 127.0.0.2 (also this machine) stays refused.
    monkeypatch.setattr(http_fetch, "address_allowed", lambda address: str(address) == "127.0.0.1")
    followed = (await run("http_fetch", {"url": server.url("/redirect?to=/hello")})).result
    assert (
        followed["status"] == 200
        and followed["body"] == "hello"
        and followed["url"].endswith("/hello")
    )
    error = await fails(
        "http_fetch", {"url": server.url("/redirect?to=" + server.url("/hello", host="127.0.0.2"))}
    )
    assert error.type == "address_not_allowed"
    assert [r.local_address for r in server.requests] == ["127.0.0.1"] * 3  # never reached .2
    assert (await fails("http_fetch", {"url": server.url("/loop")})).type == "too_many_redirects"


async def test_size_time_and_connection_limits(ws: Any, server: LocalServer, settings: Any) -> None:
    settings.CLAWSITE_HTTP_ALLOW_PRIVATE = True
    big = (await run("http_fetch", {"url": server.url("/big"), "max_bytes": 1000})).result
    assert big["truncated"] is True and len(big["body"]) == 1000
    slow = await fails("http_fetch", {"url": server.url("/slow"), "timeout": 0.3})
    assert slow.type == "timeout" and slow.retryable
    capped = await fails(
        "http_fetch", {"url": server.url("/slow"), "timeout": 60}, task_timeout=0.3
    )
    assert capped.type == "timeout"
    server.release.set()
    server.server.close()  # type: ignore[union-attr]
    await server.server.wait_closed()  # type: ignore[union-attr]
    refused = await fails("http_fetch", {"url": server.url("/hello")})
    assert refused.type == "connection_error" and refused.retryable


async def test_compressed_bodies_are_inflated_within_max_bytes(
    ws: Any, server: LocalServer, settings: Any
) -> None:
    settings.CLAWSITE_HTTP_ALLOW_PRIVATE = True
    peak = []

    real_feed = http_fetch._Inflater.feed

    def feed(self: Any, data: bytes, room: int) -> bytes:
        out = real_feed(self, data, room)
        peak.append(len(out))
        return out

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(http_fetch._Inflater, "feed", feed)
        bomb = (
            await run("http_fetch", {"url": server.url("/gzip-bomb"), "max_bytes": 1000})
        ).result
    assert bomb["truncated"] is True and bomb["body"] == "\0" * 1000
    assert max(peak) <= 1001  # never more than the cap inflated at once, however small the input
    for path, text in (("/deflate", "deflated " * 100), ("/raw-deflate", "raw " * 100)):
        found = (await run("http_fetch", {"url": server.url(path)})).result
        assert found["body"] == text and found["truncated"] is False


async def test_bad_fetch_arguments(ws: Any) -> None:
    for args in (
        {"url": "file:///etc/passwd"},
        {"url": "gopher://x"},
        {"url": "http://"},
        {"url": "http://x", "headers": {"Host": "y"}},
        {"url": "http://x", "method": "TRACE"},
    ):
        assert (await fails("http_fetch", args)).type == "invalid_args"


# --- llm_chat --------------------------------------------------------------------------------------------


async def test_llm_chat_is_disabled_without_an_endpoint(ws: Any, settings: Any) -> None:
    settings.CLAWSITE_LLM_BASE_URL = ""
    assert (await fails("llm_chat", {"prompt": "hi"})).type == "tool_disabled"


async def test_llm_chat_streams_deltas_as_progress(
    ws: Any, server: LocalServer, settings: Any
) -> None:
    settings.CLAWSITE_LLM_BASE_URL = server.url("/v1")
    settings.CLAWSITE_LLM_API_KEY = "sk-local"
    settings.CLAWSITE_LLM_MODEL = "default-model"
    progress: list[tuple[Any, Any, str]] = []
    outcome = await run(
        "llm_chat",
        {"prompt": "Say hello", "max_tokens": 20, "temperature": 0.5},
        progress=lambda *report: progress.append(report),
    )
    assert outcome.result == {
        "content": "Hello, world",
        "model": "default-model",
        "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
        "endpoint": "default",
    }
    assert [message for _, _, message in progress] == ["Hel", "Hello", "Hello, ", "Hello, world"]
    sent = server.requests[0]
    assert sent.method == "POST" and sent.headers["authorization"] == "Bearer sk-local"
    body = json.loads(sent.body)
    assert body["stream"] is True and body["max_tokens"] == 20 and body["temperature"] == 0.5
    assert body["messages"] == [{"role": "user", "content": "Say hello"}]
    chat = await run(
        "llm_chat",
        {
            "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
            "model": "m2",
        },
    )
    assert (
        chat.result["model"] == "m2"
        and json.loads(server.requests[1].body)["messages"][0]["role"] == "system"
    )


async def test_llm_chat_failures(ws: Any, server: LocalServer, settings: Any) -> None:
    settings.CLAWSITE_LLM_BASE_URL = server.url("/broken/v1")
    error = await fails("llm_chat", {"prompt": "hi"})
    assert error.type == "llm_error" and error.retryable and "503" in error.message
    assert (await fails("llm_chat", {})).type == "invalid_args"
    assert (
        await fails("llm_chat", {"prompt": "a", "messages": [{"role": "user", "content": "b"}]})
    ).type == "invalid_args"
    settings.CLAWSITE_LLM_BASE_URL = "http://127.0.0.1:9"  # nothing listens on discard
    refused = await fails("llm_chat", {"prompt": "hi"})
    assert refused.type == "connection_error" and refused.retryable
