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
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis

from ..env import BenchEnv, redis_url
from ..harness import Row, arate, rate
from .common import NOOP_TOOL, bench_user, clear_tasks

CONCURRENT = 32  # callers submitting at once (agents, requests)


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
        self.path = env.data_dir / "prototype.sqlite3"
        self.db = self.connect()
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS tasks (id TEXT PRIMARY KEY, tool TEXT, args TEXT, status TEXT, "
            "priority INTEGER, result TEXT, error TEXT, created_at REAL, updated_at REAL)"
        )
        self.ids: list[str] = []

    def connect(self) -> sqlite3.Connection:
        # Default pragmas: rollback journal, synchronous=FULL; autocommit (one fsync'd write each).
        return sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)

    def save(self, n: int, db: sqlite3.Connection | None = None) -> None:
        db = db or self.db
        for i in range(n):
            task = _prototype_task(i)
            self.redis.setex(f"{self.key}:task:{task['id']}", 3600, json.dumps(task))
            db.execute(
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

    def save_concurrently(self, n: int, width: int = CONCURRENT) -> None:
        """``save`` from ``width`` threads at once, each with its own connection (as the
        prototype's request threads would have)."""
        connections = [self.connect() for _ in range(width)]
        try:
            with ThreadPoolExecutor(width) as pool:
                list(pool.map(lambda db: self.save(n // width, db), connections))
        finally:
            for db in connections:
                db.close()

    def batch_push(self, n: int) -> None:
        for start in range(0, n, 100):
            pipe = self.redis.pipeline(transaction=False)
            for i in range(start, min(n, start + 100)):
                pipe.lpush(f"{self.key}:queue", json.dumps(_prototype_task(i)))
            pipe.execute()

    def read(self, n: int) -> None:
        for task_id in random.choices(self.ids, k=n):
            json.loads(self.redis.get(f"{self.key}:task:{task_id}"))  # type: ignore[arg-type]

    def close(self) -> None:
        self.db.close()
        self.redis.close()


def _insert_floor(user: Any, reps: int, n: int) -> Any:
    """Tasks/s of the batch submit's INSERT and commit alone, 1,000 rows per statement, the rows
    validated, built and adapted beforehand: what SQLite itself costs per task with this schema
    and its indexes, the bound of any durable batch submit over it."""
    from django.db import transaction
    from django.utils import timezone

    from tasks_app import store

    batches = iter(
        [
            store.insert_params(
                [
                    store.new_task(owner_id=user.pk, tool=NOOP_TOOL, args={"n": i}, created_at=now)
                    for i in range(1000)
                ]
            )
            for now in [timezone.now()] * ((reps + 1) * n // 1000 + 1)
        ]
    )

    def insert(count: int) -> None:
        for _ in range(max(1, count // 1000)):
            with transaction.atomic():
                store.insert_rows(next(batches))

    return rate(insert, n, reps, warmup=1000)


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
        proto_concurrent = rate(prototype.save_concurrently, 320 if quick else 640, reps, warmup=64)
        proto_batch = rate(prototype.batch_push, 5000 if quick else 20000, reps)

        async def measure() -> tuple[Any, Any, Any, Any]:
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

            async def concurrent(n: int, width: int = CONCURRENT) -> None:
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

        floor = _insert_floor(user, reps, 1000 if quick else 10000)
        ids = list(Task.objects.values_list("id", flat=True)[:5000])
        proto_read = rate(prototype.read, 2000 if quick else 10000, reps)

        def lookup(n: int) -> None:
            for task_id in random.choices(ids, k=n):
                task_to_dict(_visible_task(user, task_id))

        read = rate(lookup, 2000 if quick else 10000, reps)
        rows += [
            Row(
                "store",
                f"single durable submits, {CONCURRENT} callers at once, each answered after its "
                "commit (group commit)",
                concurrent,
                f"prototype save, {CONCURRENT} threads at once",
                proto_concurrent,
                ">= 10x",
                10.0,
            ),
            Row(
                "store",
                "single durable submit, one caller, one at a time: validate + "
                "services.submit_tasks, 1 transaction each",
                single,
                "prototype save (SETEX + INSERT OR REPLACE, sync=FULL), one at a time",
                proto_save,
                ">= 10x",
                10.0,
            ),
            Row(
                "store",
                "single submit from async code, one at a time (DB-thread round trip each)",
                single_async,
                "prototype save, one at a time",
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
                "floor of the above: the same INSERT + commit of rows built beforehand",
                floor,
                "prototype Redis pipeline of 100 LPUSH",
                proto_batch,
                "(bound)",
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
