"""Live updates: from a task's finished_at to its websocket frame at a Bearer client, p50 and p99,
while tasks are submitted over HTTP at a steady rate and one worker runs them."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime

from websockets.asyncio.client import connect

from ..env import BenchEnv, free_port, wait_port
from ..harness import Row, Stat, percentile, wait_until
from ..loadgen import _read_response, build_request
from .common import NOOP_TOOL, bench_user, clear_tasks

RATE = 1000  # tasks/s, the steady rate
TICK = 0.05  # one batch every 50 ms


def run(env: BenchEnv, quick: bool, budget: float) -> list[Row]:
    from tasks_app.models import WorkerHeartbeat

    _, token = bench_user()
    clear_tasks()
    port = free_port()
    daphne = env.start_daphne(port)
    worker = env.start_worker("worker-live")
    seconds = 4 if quick else 10
    per_tick = int(RATE * TICK)
    batch = {"tasks": [{"tool": NOOP_TOOL, "args": {"n": i}} for i in range(per_tick)]}
    raw = build_request("POST", "/api/v1/tasks/batch", batch, token, port)
    latencies: list[float] = []
    finished: set[str] = set()
    submitted = 0
    expected: list[int] = []  # set once the submits are over
    try:
        wait_port(port)
        wait_until(lambda: WorkerHeartbeat.objects.exists(), 60, 0.05, "the worker's heartbeat")

        async def measure() -> float:
            nonlocal submitted
            uri = f"ws://127.0.0.1:{port}/ws/tasks/"
            async with connect(
                uri, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None
            ) as ws:

                async def listen(all_seen: asyncio.Event) -> None:
                    async for frame in ws:
                        now = time.time()
                        message = json.loads(frame)
                        tasks = message.get("tasks") or (
                            [message["task"]] if "task" in message else []
                        )
                        for task in tasks:
                            if task.get("status") == "succeeded" and task["id"] not in finished:
                                finished.add(task["id"])
                                done = datetime.fromisoformat(
                                    task["finished_at"].replace("Z", "+00:00")
                                )
                                latencies.append(now - done.timestamp())
                        if expected and len(finished) >= expected[0]:
                            all_seen.set()

                all_seen = asyncio.Event()
                listener = asyncio.create_task(listen(all_seen))
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                start = time.perf_counter()
                ticks = int(seconds / TICK)
                for i in range(ticks):
                    # Absolute schedule: a slow answer is not made up by a burst, nor allowed to drift.
                    delay = start + i * TICK - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    writer.write(raw)
                    status, _ = await _read_response(reader)
                    if status != 202:
                        raise RuntimeError(f"batch submit answered {status}")
                    submitted += per_tick
                achieved = submitted / (time.perf_counter() - start)
                writer.close()
                expected.append(submitted)
                if len(finished) >= submitted:
                    all_seen.set()
                try:
                    await asyncio.wait_for(all_seen.wait(), 20)
                except TimeoutError:
                    pass  # reported: fewer seen than submitted
                listener.cancel()
                return achieved

        achieved = asyncio.run(measure())
    finally:
        env.stop(worker)
        env.stop(daphne)
        clear_tasks()
    ms = [v * 1000 for v in latencies]
    p50, p99 = percentile(ms, 50), percentile(ms, 99)
    note = (
        f"{len(finished)} of {submitted} tasks seen finishing over the websocket; submit rate achieved "
        f"{achieved:,.0f}/s (asked {RATE:,}/s); p50 {p50:.1f} ms, max {max(ms):.1f} ms"
    )
    return [
        Row(
            "live",
            f"finish -> websocket frame, p99 at {RATE:,} tasks/s",
            Stat.single(p99, "ms"),
            target="p99 <= 100 ms",
            check=lambda s: s.median <= 100 and len(finished) == submitted,
            note=note,
        ),
    ]
