"""Store: ClawSite's durable submit and lookup, in process, against the prototype's paths
reproduced here (Redis SETEX + autocommit INSERT OR REPLACE on a default-pragma SQLite file; a
Redis pipeline of LPUSH; a Redis GET)."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import time
import uuid
from typing import Any

import redis

from ..env import BenchEnv, redis_url
from ..harness import Row, arate, rate
from .common import NOOP_TOOL, bench_user, clear_tasks


def _prototype_task(i: int) -> dict[str, Any]:
    now = time.time()
    return {
        "id": str(uuid.uuid4()),
        "tool": NOOP_TOOL,
        "args": {"n": i},
        "status": "pending",
        "priority": 0,
        "created_at": now,
        "updated_at": now,
        "result": None,
        "error": None,
    }


class Prototype:
    """The prototype's store, as its figures measured it."""

    def __init__(self, env: BenchEnv) -> None:
        self.redis = redis.Redis.from_url(redis_url("prototype"))
        self.key = f"proto:{env.run_id}"
        # Default pragmas: rollback journal, synchronous=FULL; autocommit (one fsync'd write each).
        self.db = sqlite3.connect(env.data_dir / "prototype.sqlite3", isolation_level=None)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS tasks (id TEXT PRIMARY KEY, tool TEXT, args TEXT, status TEXT, "
            "priority INTEGER, result TEXT, error TEXT, created_at REAL, updated_at REAL)"
        )
        self.ids: list[str] = []

    def save(self, n: int) -> None:
        for i in range(n):
            task = _prototype_task(i)
            self.redis.setex(f"{self.key}:task:{task['id']}", 3600, json.dumps(task))
            self.db.execute(
                "INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    task["id"],
                    task["tool"],
                    json.dumps(task["args"]),
                    task["status"],
                    task["priority"],
                    None,
                    None,
                    task["created_at"],
                    task["updated_at"],
                ),
            )
            self.ids.append(task["id"])

    def batch_push(self, n: int) -> None:
        for start in range(0, n, 100):
            pipe = self.redis.pipeline(transaction=False)
            for i in range(start, min(n, start + 100)):
                pipe.lpush(f"{self.key}:queue", json.dumps(_prototype_task(i)))
            pipe.execute()

    def read(self, n: int) -> None:
        for task_id in random.choices(self.ids, k=n):
            json.loads(self.redis.get(f"{self.key}:task:{task_id}"))

    def close(self) -> None:
        self.db.close()
        self.redis.close()


def run(env: BenchEnv, quick: bool, budget: float) -> list[Row]:
    from tasks_app import services
    from tasks_app.api.views import _visible_task, submit_together
    from tasks_app.db import run_in_db_thread
    from tasks_app.events import bind_event_loop
    from tasks_app.serializers import task_to_dict

    user, _ = bench_user()
    prototype = Prototype(env)
    reps = 3 if quick else 5
    rows: list[Row] = []
    try:
        proto_save = rate(prototype.save, 150 if quick else 400, reps)
        proto_batch = rate(prototype.batch_push, 5000 if quick else 20000, reps)

        async def measure() -> tuple[Any, Any, Any]:
            bind_event_loop()

            def submission(i: int) -> Any:
                return services.validate_submission({"tool": NOOP_TOOL, "args": {"n": i}}, user)

            def submit_each(n: int) -> None:
                for i in range(n):
                    services.submit_tasks(user, [submission(i)])

            async def single(n: int) -> None:
                # Run where the API runs it: on the process's DB thread, events to this loop.
                await run_in_db_thread(submit_each, n)

            async def single_async(n: int) -> None:
                for i in range(n):
                    await submit_together((user, [submission(i)]))

            async def concurrent(n: int, width: int = 32) -> None:
                async def lane(count: int) -> None:
                    for i in range(count):
                        await submit_together((user, [submission(i)]))

                await asyncio.gather(*(lane(n // width) for _ in range(width)))

            async def batch(n: int) -> None:
                for _ in range(n // 1000):
                    await submit_together((user, [submission(i) for i in range(1000)]))

            one = await arate(single, 1000 if quick else 3000, reps)
            one_async = await arate(single_async, 500 if quick else 2000, reps)
            many = await arate(concurrent, 640 if quick else 3200, reps, warmup=320)
            batched = await arate(batch, 3000 if quick else 10000, reps, warmup=1000)
            await asyncio.sleep(0.1)  # let the last coalesced events go out
            return one, one_async, many, batched

        single, single_async, concurrent, batched = asyncio.run(measure())

        from tasks_app.models import Task

        ids = list(Task.objects.values_list("id", flat=True)[:5000])
        proto_read = rate(prototype.read, 2000 if quick else 10000, reps)

        def lookup(n: int) -> None:
            for task_id in random.choices(ids, k=n):
                task_to_dict(_visible_task(user, task_id))

        read = rate(lookup, 2000 if quick else 10000, reps)
        rows += [
            Row(
                "store",
                "single durable submit: validate + services.submit_tasks, 1 transaction each",
                single,
                "prototype save (SETEX + INSERT OR REPLACE, sync=FULL)",
                proto_save,
                ">= 10x",
                10.0,
            ),
            Row(
                "store",
                "single submit from async code, one at a time (DB-thread round trip each)",
                single_async,
                "prototype save",
                proto_save,
                "(info)",
            ),
            Row(
                "store",
                "single submit from async code, 32 at once (group commit)",
                concurrent,
                "prototype save",
                proto_save,
                "(info)",
            ),
            Row(
                "store",
                "batch durable submit, 1,000 per call (per task)",
                batched,
                "prototype Redis pipeline of 100 LPUSH",
                proto_batch,
                ">= 1.0x",
                1.0,
            ),
            Row(
                "store",
                "read by id (SQLite primary key, as the API: row -> task -> dict)",
                read,
                "prototype Redis GET + json.loads",
                proto_read,
                ">= 1.0x",
                1.0,
            ),
        ]
    finally:
        prototype.close()
        clear_tasks()
    return rows
