"""Memory: the worker process's RSS after 10k and after 100k tasks (--quick: 2k and 10k)."""

from __future__ import annotations

from ..env import BenchEnv, rss_kib
from ..harness import Row, Stat, wait_until
from .common import bench_user, clear_tasks, insert_backlog, status_counts


def run(env: BenchEnv, quick: bool, budget: float) -> list[Row]:
    owner, _ = bench_user()
    first, total = (2_000, 10_000) if quick else (10_000, 100_000)
    clear_tasks()
    worker = env.start_worker("worker-memory")
    try:
        insert_backlog(owner, first)
        wait_until(
            lambda: status_counts().get("succeeded", 0) >= first, budget / 3, 0.1, f"{first} tasks"
        )
        after_first = rss_kib(worker.pid)
        done = first
        while done < total:  # in steps, so the queue stays a realistic size
            step = min(total - done, 10_000)
            insert_backlog(owner, step)
            done += step
            wait_until(
                lambda done=done: status_counts().get("succeeded", 0) >= done,  # type: ignore[misc]
                budget / 2,
                0.1,
                f"{done} tasks",
            )
        after_total = rss_kib(worker.pid)
    finally:
        env.stop(worker)
        clear_tasks()
    growth = (after_total - after_first) / after_first * 100
    label = "(quick: smaller counts)" if quick else ""
    return [
        Row(
            "memory",
            f"worker RSS after {total:,} tasks {label}".strip(),
            Stat.single(after_total / 1024, "MiB"),
            f"after {first:,}",
            Stat.single(after_first / 1024, "MiB"),
            "growth < 10%",
            check=lambda s: growth < 10,
            note=f"growth {growth:+.1f}%",
        ),
    ]
