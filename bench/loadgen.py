"""A small HTTP/1.1 load generator for loopback: N keep-alive connections, each sending its next
request as soon as the previous answer is read. Plain asyncio streams, so the client costs little
of the two cores it shares with the server; bounded by a request count and a deadline."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoadResult:
    requests: int = 0
    elapsed: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0


def build_request(
    method: str, path: str, body: Any = None, token: str | None = None, port: int = 80
) -> bytes:
    payload = b"" if body is None else json.dumps(body).encode()
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: keep-alive"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
        return status, body
    return status, await reader.readexactly(length)


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    """One request on a kept-alive connection, and its answer (status, body)."""
    writer.write(request)
    return await _read_response(reader)


Exchange = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[int]]


async def drive(
    port: int,
    make_request: Callable[[int], bytes],
    total: int,
    connections: int,
    deadline: float,
    check: Callable[[int, bytes], None] | None = None,
) -> LoadResult:
    """Send ``total`` requests (``make_request(i)``) over ``connections`` connections, stopping
    early at ``deadline`` seconds; returns counts, statuses and per-request latencies."""

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> int:
        status, body = await exchange(reader, writer, make_request(i))
        if check is not None:
            check(status, body)
        return status

    return await drive_exchanges(port, one, total, connections, deadline)


async def drive_exchanges(
    port: int, one: Exchange, total: int, connections: int, deadline: float
) -> LoadResult:
    """``total`` runs of ``one(reader, writer, i)`` (any requests on a kept-alive connection,
    e.g. a submit and then its wait; it returns the status to count) over ``connections``
    connections, stopping early at ``deadline`` seconds."""
    result = LoadResult()
    counter = iter(range(total))
    stop_at = time.perf_counter() + deadline

    async def lane() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in counter:
                if time.perf_counter() > stop_at:
                    break
                sent = time.perf_counter()
                status = await one(reader, writer, i)
                result.latencies.append(time.perf_counter() - sent)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                result.requests += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(connections)))
    result.elapsed = time.perf_counter() - start
    return result
