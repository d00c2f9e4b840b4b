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

from ..env import BenchEnv, free_port, wait_port
from ..harness import Deadline, Row, Stat, percentile
from ..loadgen import Exchange, drive_exchanges, exchange
from .common import NOOP_TOOL, bench_user, clear_tasks

SESSIONS = 16
VERSION = "2026-07-28"


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


def mcp_call(token: str, port: int) -> Exchange:
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

    async def call(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> int:
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
        return status

    return call


def rest_submit_and_wait(token: str, port: int) -> Exchange:
    async def call(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> int:
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
        return status

    return call


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
                await drive_exchanges(port, call, 100, SESSIONS, 30)
            for _ in range(reps):
                for name, call in kinds.items():  # alternated: drift hits both alike
                    left = max(1.0, deadline.left() / 2)
                    result = await drive_exchanges(port, call, count, SESSIONS, left)
                    rates[name].append(result.per_second)
                    latencies[name] += result.latencies

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
