"""Django apps on ClawSite: ``@task`` no-op functions drained by one ClawSite worker, against
django-tasks-db's ``db_worker`` (the reference database backend, on the same SQLite settings)
and Celery (threads pool) draining a no-op; and what named queues cost a tool-task drain."""

from __future__ import annotations

import time
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..env import PYTHON, BenchEnv
from ..harness import Deadline, Row, Stat, wait_until
from .common import bench_user, clear_tasks, insert_backlog, run_window, status_counts
from .e2e import PEERS, drain_peer

FUNCTIONS = {"sync": "bench.django_noop.noop", "async": "bench.django_noop.anoop"}


def insert_django_backlog(function: str, count: int, chunk: int = 5000) -> None:
    """``count`` queued Django tasks of ``function``, as the backend writes them (no owner,
    source django, one attempt), straight through the store like the tool backlog."""
    from tasks_app import store
    from tasks_app.models import DJANGO_TASK_TOOL, TaskSource

    done = 0
    while done < count:
        size = min(chunk, count - done)
        now = timezone.now()
        rows = [
            store.new_task(
                owner_id=None,
                tool=DJANGO_TASK_TOOL,
                args={"task": function, "args": [done + i], "kwargs": {}},
                source=TaskSource.DJANGO,
                max_attempts=1,
                timeout=60.0,
                created_at=now,
            )
            for i in range(size)
        ]
        with transaction.atomic():
            store.insert_tasks(rows)
        done += size


def drain(env: BenchEnv, count: int, timeout: float, fill: object, **worker_env: str) -> float:
    """One worker started on a backlog made by ``fill()``: tasks/s from the first start to the
    last finish (the rows' own times); every task must succeed."""
    clear_tasks()
    fill()  # type: ignore[operator]
    worker = env.start_worker("worker-django", **worker_env)
    try:
        wait_until(lambda: status_counts().get("succeeded", 0) >= count, timeout, 0.05, "the drain")
    finally:
        env.stop(worker)
    first, last, _, unfinished = run_window()
    if unfinished:
        raise RuntimeError(f"{unfinished} tasks did not succeed")
    return count / (last - first)


def drain_db_worker(env: BenchEnv, count: int, timeout: float) -> float:
    """django-tasks-db: ``count`` enqueued through its backend (one transaction), then its
    ``db_worker`` until every result succeeded; tasks/s from the first start to the last finish."""
    from django_tasks_db.models import DBTaskResult

    from bench.django_noop import db_noop

    DBTaskResult.objects.all().delete()
    with transaction.atomic():
        for i in range(count):
            db_noop.enqueue(i)
    argv = [
        PYTHON,
        "manage.py",
        "db_worker",
        "--backend",
        "db",
        "--queue-name",
        "*",
        "--interval",
        "0.1",
        "--no-startup-delay",
        "--no-reload",
    ]
    worker = env.spawn("db-worker", argv)
    try:
        wait_until(
            lambda: DBTaskResult.objects.filter(status="SUCCESSFUL").count() >= count,
            timeout,
            0.2,
            "db_worker's drain",
        )
    finally:
        env.stop(worker)
    results = DBTaskResult.objects.all()
    first = min(r.started_at for r in results if r.started_at)
    last = max(r.finished_at for r in results if r.finished_at)
    DBTaskResult.objects.all().delete()
    return count / (last - first).total_seconds()


def run(env: BenchEnv, quick: bool, budget: float) -> list[Row]:
    owner, _ = bench_user()
    deadline = Deadline(budget)
    n = 5000 if quick else 10000
    db_n = 300 if quick else 1000
    peer_n = 1500 if quick else 5000
    reps = 2
    sync: list[Any]
    async_: list[Any]
    db: list[Any]
    celery: list[Any]
    everyone: list[Any]
    queued: list[Any]
    sync, async_, db, celery, everyone, queued = [], [], [], [], [], []
    for _ in range(reps):
        for kind, results in (("sync", sync), ("async", async_)):
            results.append(
                drain(
                    env,
                    n,
                    min(180, deadline.left()),
                    lambda kind=kind: insert_django_backlog(FUNCTIONS[kind], n),
                )
            )
        # The same tool-task drain, alternated: a worker of every queue on the default queue,
        # and a worker of two named queues (the claim's per-queue walks) on one of them.
        everyone.append(drain(env, n, min(120, deadline.left()), lambda: insert_backlog(owner, n)))
        queued.append(
            drain(
                env,
                n,
                min(120, deadline.left()),
                lambda: insert_backlog(owner, n, queue="bulk"),
                CLAWSITE_WORKER_QUEUES="bulk,mail",
            )
        )
    clear_tasks()
    for _ in range(1 if quick else 2):
        db.append(drain_db_worker(env, db_n, min(180, deadline.left())))
        celery.append(drain_peer(env, "celery", peer_n, min(120, deadline.left())))
        time.sleep(0.5)

    sync_s, async_s = Stat.of(sync, "tasks/s"), Stat.of(async_, "tasks/s")
    db_s, celery_s = Stat.of(db, "tasks/s"), Stat.of(celery, "tasks/s")
    figure = f"Django @task no-op (sync def, worker threads), 1 worker process, draining {n:,}"
    return [
        Row(
            "django",
            figure,
            sync_s,
            f"django-tasks-db db_worker, same SQLite settings, draining {db_n:,}",
            db_s,
            ">= 20x",
            20.0,
        ),
        Row("django", figure, sync_s, PEERS["celery"][1], celery_s, ">= 5x Celery", 5.0),
        Row(
            "django",
            f"Django @task no-op (async def, on the loop), 1 worker process, draining {n:,}",
            async_s,
            PEERS["celery"][1],
            celery_s,
            "(info)",
        ),
        Row(
            "django",
            f"tool no-op in queue 'bulk', worker of --queues bulk,mail, draining {n:,}",
            Stat.of(queued, "tasks/s"),
            "the same drain, default queue, worker of every queue (same run, alternated)",
            Stat.of(everyone, "tasks/s"),
            ">= 0.9x",
            0.9,
        ),
    ]
