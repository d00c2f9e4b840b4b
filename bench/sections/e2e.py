"""End to end: tasks/s from a queued task to its persisted result, draining a backlog, with one and
two ``runworker`` processes, and with HTTP batch submits and the worker running together; against
Celery (threads pool), Dramatiq and Huey draining the same count of no-op tasks on the same Redis."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import redis

from ..env import BIN, PYTHON, BenchEnv, free_port, redis_url, wait_port
from ..harness import Deadline, Row, Stat, wait_until
from ..loadgen import build_request, drive
from .common import NOOP_TOOL, bench_user, clear_tasks, insert_backlog, run_window, status_counts

PEERS = {
    # name: (worker argv after the venv's bin folder, how the issue describes it)
    "celery": (
        [
            "celery",
            "-A",
            "bench.peers.celery_app",
            "worker",
            "--pool",
            "threads",
            "-c",
            "8",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        "Celery 5 threads pool, 8 threads",
    ),
    "dramatiq": (
        ["dramatiq", "bench.peers.dramatiq_app", "--processes", "1", "--threads", "8"],
        "Dramatiq, 1 process x 8 threads",
    ),
    "huey": (
        ["huey_consumer", "bench.peers.huey_app.huey", "-k", "process", "-w", "2", "-q"],
        "Huey, 2 worker processes",
    ),
}
MIXED_BATCH = 500
LOCK_ERRORS = ("database is locked", "database table is locked")


# Limits on the drained tool and its queue that never bind: what the limited claim costs.
LIMITS: dict[str, dict[str, Any]] = {
    f"tool:{NOOP_TOOL}": {"concurrency": 100_000, "rate": "10000000/s"},
    "queue:default": {"concurrency": 100_000},
}
LIMITS_TEXT = ", ".join(
    f"{key} " + " ".join(f"{k} {v}" for k, v in spec.items()) for key, spec in LIMITS.items()
)


@contextlib.contextmanager
def limits_configured() -> Iterator[None]:
    from tasks_app.models import Limit

    Limit.objects.bulk_create([Limit(key=key, **spec) for key, spec in LIMITS.items()])
    try:
        yield
    finally:
        Limit.objects.all().delete()


def drain_clawsite(
    env: BenchEnv, owner: object, count: int, workers: int, timeout: float
) -> tuple[float, int, int]:
    """Insert a backlog, start ``workers`` processes, wait for every task to succeed; returns
    tasks/s (first start to last finish, from the rows), tasks run twice, tasks not succeeded."""
    clear_tasks()
    insert_backlog(owner, count)
    processes = [env.start_worker(f"worker-{workers}w-{i}") for i in range(workers)]
    try:
        wait_until(
            lambda: status_counts().get("succeeded", 0) >= count,
            timeout,
            0.05,
            f"{count} tasks to succeed",
        )
    finally:
        for process in processes:
            env.stop(process)
    first, last, repeated, unfinished = run_window()
    return count / (last - first), repeated, unfinished


def drain_peer(env: BenchEnv, peer: str, count: int, timeout: float) -> float:
    prefix = f"peer-{peer}-{env.run_id}-{time.monotonic_ns()}"
    url = redis_url(peer)
    peer_env = {
        "BENCH_PEER_PREFIX": prefix,
        "BENCH_PEER_REDIS": url,
        "BENCH_PEER_EXPECTED": str(count),
    }
    enqueue = env.spawn(
        f"enqueue-{peer}", [PYTHON, "-m", "bench.peers.enqueue", peer, str(count)], peer_env
    )
    if enqueue.wait(timeout=timeout) != 0:
        raise RuntimeError(f"enqueue for {peer} failed: {env.log_tail(f'enqueue-{peer}')}")
    env.processes.remove(enqueue)
    argv, _ = PEERS[peer]
    worker = env.spawn(f"peer-{peer}", [str(BIN / argv[0]), *argv[1:]], peer_env)
    client = redis.Redis.from_url(url)
    try:
        wait_until(
            lambda: client.get(f"{prefix}:last"), timeout, 0.05, f"{peer} to finish {count} tasks"
        )
        first = float(client.get(f"{prefix}:first"))  # type: ignore[arg-type]
        last = float(client.get(f"{prefix}:last"))  # type: ignore[arg-type]
    except TimeoutError:
        raise RuntimeError(
            f"{peer}: {client.get(f'{prefix}:done')!s} of {count} done; {env.log_tail(f'peer-{peer}')}"
        ) from None
    finally:
        env.stop(worker, timeout=20)
        client.close()
    return count / (last - first)


def submit_and_run(env: BenchEnv, token: str, count: int, timeout: float) -> float:
    """HTTP batch submits (2 connections, 500 per request) with one worker running all along."""
    clear_tasks()
    port = free_port()
    daphne = env.start_daphne(port)
    worker = env.start_worker("worker-mixed")
    batch = {"tasks": [{"tool": NOOP_TOOL, "args": {"n": i}} for i in range(MIXED_BATCH)]}
    raw = build_request("POST", "/api/v1/tasks/batch", batch, token, port)
    try:
        wait_port(port)
        # Wait until the worker is up (its heartbeat row), so its start-up is not timed.
        from tasks_app.models import WorkerHeartbeat

        wait_until(lambda: WorkerHeartbeat.objects.exists(), 60, 0.05, "the worker's heartbeat")
        start = time.perf_counter()
        result = asyncio.run(drive(port, lambda i: raw, count // MIXED_BATCH, 2, timeout))
        if set(result.statuses) != {202}:
            raise RuntimeError(f"batch submits answered {result.statuses}")
        submitted = result.requests * MIXED_BATCH
        wait_until(
            lambda: status_counts().get("succeeded", 0) >= submitted,
            timeout,
            0.05,
            "the submitted tasks to succeed",
        )
        return submitted / (time.perf_counter() - start)
    finally:
        env.stop(worker)
        env.stop(daphne)


def run(env: BenchEnv, quick: bool, budget: float) -> list[Row]:
    owner, token = bench_user()
    deadline = Deadline(budget)
    n = 5000 if quick else 20000
    peer_n = 1500 if quick else 5000
    reps = 2 if quick else 3
    one, two, limited, lost, twice, peers = [], [], [], 0, 0, {}
    for _ in range(reps):
        rate, repeated, unfinished = drain_clawsite(env, owner, n, 1, min(120, deadline.left()))
        one.append(rate)
        with limits_configured():
            rate, repeated, unfinished = drain_clawsite(env, owner, n, 1, min(120, deadline.left()))
        limited.append(rate)
        lost += unfinished
        twice += repeated
        rate, repeated, unfinished = drain_clawsite(env, owner, n, 2, min(120, deadline.left()))
        two.append(rate)
        lost += unfinished
        twice += repeated
    lock_errors = sum(env.log_text().count(text) for text in LOCK_ERRORS)
    for peer in PEERS:
        peers[peer] = [
            drain_peer(env, peer, peer_n, min(120, deadline.left()))
            for _ in range(1 if quick else 2)
        ]
    mixed = [
        submit_and_run(env, token, n, min(120, deadline.left())) for _ in range(1 if quick else 2)
    ]
    clear_tasks()

    one_s, two_s = Stat.of(one, "tasks/s"), Stat.of(two, "tasks/s")
    limited_s = Stat.of(limited, "tasks/s")
    peer_s = {name: Stat.of(values, "tasks/s") for name, values in peers.items()}
    fastest = max(peer_s, key=lambda name: peer_s[name].median)
    rows = [
        Row(
            "e2e",
            f"1 worker process, draining {n:,}",
            one_s,
            PEERS["celery"][1],
            peer_s["celery"],
            ">= 10x Celery",
            10.0,
        ),
        Row(
            "e2e",
            f"1 worker process, draining {n:,}",
            one_s,
            f"fastest peer: {PEERS[fastest][1]}",
            peer_s[fastest],
            ">= 3x fastest peer",
            3.0,
        ),
    ]
    rows.append(
        Row(
            "e2e",
            f"1 worker process, draining {n:,}, limits configured (not binding): {LIMITS_TEXT}",
            limited_s,
            "1 worker process without limits (same run, alternated)",
            one_s,
            ">= 0.95x",
            0.95,
        )
    )
    rows += [
        Row(
            "e2e",
            f"peer: {PEERS[name][1]}, draining {peer_n:,}",
            peer_s[name],
            target="(reference)",
        )
        for name in PEERS
    ]
    rows += [
        Row(
            "e2e",
            f"HTTP batch submits ({MIXED_BATCH} per request) + 1 worker together",
            Stat.of(mixed, "tasks/s"),
            PEERS["celery"][1],
            peer_s["celery"],
            ">= 5x Celery",
            5.0,
        ),
        Row(
            "e2e",
            f"2 worker processes, one SQLite file, draining {n:,}",
            two_s,
            "1 worker process",
            one_s,
            ">= 0.9x, none lost, no lock error",
            0.9 if not (lost or twice or lock_errors) else 1e9,
            note=f"{lost} not succeeded, {twice} run twice, {lock_errors} lock errors in the logs",
        ),
    ]
    return rows
