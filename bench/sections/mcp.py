"""MCP: ``tools/call`` round trips over /mcp (each call a ClawSite task, answered once it has
finished) beside what an agent does without MCP, the REST submit-and-wait of the same tool
(``POST /api/v1/tasks`` then ``GET /api/v1/tasks/<id>?wait=30``), measured in the same run on the
same daphne and worker, 16 concurrent sessions (keep-alive connections) each.

The MCP requests are the bytes the official 2.x SDK sends on a 2026-07-28 connection (the
per-request envelope and headers, ``Accept`` of JSON and SSE: the answer comes as an SSE stream),
driven by the bench's own small HTTP client so that neither side pays for a heavier client."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator

from ..env import BenchEnv, free_port, wait_port
from ..harness import Deadline, Row, Stat, percentile
from ..loadgen import exchange
from .common import NOOP_TOOL, bench_user, clear_tasks

SESSIONS = 16
VERSION = "2026-07-28"
RoundTrip = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


def _request(method: str, path: str, token: str, port: int, body: bytes, *extra: str) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"Authorization: Bearer {token}",
        *extra,
    ]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def mcp_call(token: str, port: int) -> RoundTrip:
    headers = (
        "Accept: application/json, text/event-stream",
        f"MCP-Protocol-Version: {VERSION}",
        "Mcp-Method: tools/call",
        f"Mcp-Name: {NOOP_TOOL}",
    )
    meta = {
        "io.modelcontextprotocol/protocolVersion": VERSION,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
    }

    async def call(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        message = {
            "jsonrpc": "2.0",
            "id": i,
            "method": "tools/call",
            "params": {"name": NOOP_TOOL, "arguments": {"n": i}, "_meta": meta},
        }
        raw = _request("POST", "/mcp", token, port, json.dumps(message).encode(), *headers)
        status, body = await exchange(reader, writer, raw)
        answer = json.loads(body.rsplit(b"data: ", 1)[-1])
        if status != 200 or answer["result"]["structuredContent"] != {"n": i}:
            raise RuntimeError(f"MCP call {i}: {status} {body[:300]!r}")

    return call


def rest_submit_and_wait(token: str, port: int) -> RoundTrip:
    async def call(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        body = json.dumps({"tool": NOOP_TOOL, "args": {"n": i}}).encode()
        status, answer = await exchange(
            reader, writer, _request("POST", "/api/v1/tasks", token, port, body)
        )
        task_id = json.loads(answer)["id"]
        path = f"/api/v1/tasks/{task_id}?wait=30"
        status, answer = await exchange(reader, writer, _request("GET", path, token, port, b""))
        task = json.loads(answer)
        if status != 200 or task["result"] != {"n": i}:
            raise RuntimeError(f"REST round trip {i}: {status} {answer[:300]!r}")

    return call


async def drive_round_trips(
    port: int, round_trip: RoundTrip, total: int, deadline: float
) -> tuple[float, list[float]]:
    """``total`` round trips over SESSIONS connections: (round trips/s, latencies)."""
    counter: Iterator[int] = iter(range(total))
    latencies: list[float] = []
    stop_at = time.perf_counter() + deadline

    async def lane() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in counter:
                if time.perf_counter() > stop_at:
                    break
                sent = time.perf_counter()
                await round_trip(reader, writer, i)
                latencies.append(time.perf_counter() - sent)
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(SESSIONS)))
    return len(latencies) / (time.perf_counter() - start), latencies


def run(env: BenchEnv, quick: bool, budget: float) -> list[Row]:
    _, token = bench_user()
    port = free_port()
    daphne = env.start_daphne(port)
    worker = env.start_worker("worker-mcp")
    deadline = Deadline(budget)
    count, reps = (300, 3) if quick else (1500, 3)
    kinds = {"mcp": mcp_call(token, port), "rest": rest_submit_and_wait(token, port)}
    rates: dict[str, list[float]] = {name: [] for name in kinds}
    latencies: dict[str, list[float]] = {name: [] for name in kinds}
    try:
        wait_port(port)

        async def measure() -> None:
            for call in kinds.values():  # warm-up: imports, connections, the worker's loop
                await drive_round_trips(port, call, 100, 30)
            for _ in range(reps):
                for name, call in kinds.items():  # alternated: drift hits both alike
                    left = max(1.0, deadline.left() / 2)
                    per_second, seen = await drive_round_trips(port, call, count, left)
                    rates[name].append(per_second)
                    latencies[name] += seen

        asyncio.run(measure())
    finally:
        env.stop(worker)
        env.stop(daphne)
        clear_tasks()

    def spread(name: str) -> str:
        values = latencies[name]
        return (
            f"p50 {statistics.median(values) * 1000:.1f} ms, "
            f"p99 {percentile(values, 99) * 1000:.1f} ms"
        )

    return [
        Row(
            "mcp",
            f"MCP tools/call round trips ({NOOP_TOOL}, each a task), {SESSIONS} sessions",
            Stat.of(rates["mcp"], "calls/s"),
            f"REST POST /tasks + GET /tasks/<id>?wait=, {SESSIONS} connections",
            Stat.of(rates["rest"], "calls/s"),
            ">= 0.8x",
            0.8,
            note=f"MCP {spread('mcp')}; REST {spread('rest')}",
        )
    ]
