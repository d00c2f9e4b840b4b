"""Profiles behind BENCHMARKS.md's bounds: ``python -m bench.profile submit|batch|db|worker|django|django-async``.

- ``submit``: one caller's single durable submits (validate + services.submit_tasks), cProfile;
- ``batch``: batch submits of 1,000, cProfile;
- ``db``: the worker's database side alone (write 64 completions + claim 64, in a loop, one
  thread, no event loop), its rate and cProfile;
- ``worker``: a real ``runworker`` draining a backlog, sampled by py-spy while it holds the GIL,
  with its CPU time per task from /proc.
"""

from __future__ import annotations

import asyncio
import collections
import cProfile
import os
import pstats
import re
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

from .env import BIN, BenchEnv
from .harness import wait_until

TOP = 25


def _print_profile(profile: cProfile.Profile) -> None:
    pstats.Stats(profile).sort_stats("tottime").print_stats(TOP)


def profile_submits(user: Any, batch: bool, n: int) -> None:
    from tasks_app import services
    from tasks_app.db import run_in_db_thread
    from tasks_app.events import bind_event_loop

    from .sections.common import NOOP_TOOL

    def submission(i: int) -> Any:
        return services.validate_submission({"tool": NOOP_TOOL, "args": {"n": i}}, user)

    def submit(count: int, profile: cProfile.Profile | None = None) -> float:
        start = time.perf_counter()
        if profile:
            profile.enable()
        if batch:
            for _ in range(count // 1000):
                services.submit_grouped([(user, [submission(i) for i in range(1000)])])
        else:
            for i in range(count):
                services.submit_tasks(user, [submission(i)])
        if profile:
            profile.disable()
        return count / (time.perf_counter() - start)

    async def measure() -> None:
        bind_event_loop()  # events go out from this loop, as under daphne
        await run_in_db_thread(submit, n // 5)
        print(f"{await run_in_db_thread(submit, n):,.0f} tasks/s unprofiled")
        profile = cProfile.Profile()
        await run_in_db_thread(submit, n, profile)
        await asyncio.sleep(0.1)
        _print_profile(profile)

    asyncio.run(measure())


def profile_db_side(user: Any, n: int) -> None:
    from django.db import transaction
    from django.utils import timezone

    from tasks_app import store
    from tasks_app.db import write_lock
    from tasks_app.models import TaskStatus

    from .sections.common import clear_tasks, insert_backlog

    def drain(profile: cProfile.Profile | None = None) -> float:
        clear_tasks()
        insert_backlog(user, n)
        completions: list[store.Completion] = []
        start = time.perf_counter()
        if profile:
            profile.enable()
        while True:
            with write_lock(), transaction.atomic():
                store.complete_tasks("profile", completions)
                claimed = store.claim_runnable_tasks(
                    "profile", 64, timezone.now(), timedelta(seconds=30)
                )
            if not claimed and not completions:
                break
            now = timezone.now()
            completions = [
                store.Completion(t, TaskStatus.SUCCEEDED, {"n": 1}, finished_at=now)
                for t in claimed
            ]
        if profile:
            profile.disable()
        return n / (time.perf_counter() - start)

    print(f"{drain():,.0f} tasks/s unprofiled (write + claim, 64 per round trip)")
    profile = cProfile.Profile()
    drain(profile)
    _print_profile(profile)


def profile_worker(env: BenchEnv, user: Any, n: int, function: str | None = None) -> None:
    """A worker draining ``n`` tool no-ops, or Django tasks of ``function``."""
    from .sections.common import clear_tasks, insert_backlog, run_window, status_counts
    from .sections.django import insert_django_backlog

    clear_tasks()
    if function is None:
        insert_backlog(user, n)
    else:
        insert_django_backlog(function, n)
    worker = env.start_worker("profiled-worker")
    output = env.data_dir / "worker.pyspy"
    sampler = [str(BIN / "py-spy"), "record", "--gil", "--nonblocking", "-r", "250", "-f", "raw"]
    spy = subprocess.Popen(
        [*sampler, "-o", str(output), "-p", str(worker.pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: status_counts().get("succeeded", 0) >= n, 300, 0.05, "the drain")
    cpu = _cpu_seconds(worker.pid)
    spy.send_signal(2)
    spy.wait()
    env.stop(worker)
    first, last, _, _ = run_window()
    print(
        f"{n / (last - first):,.0f} tasks/s while sampled; worker CPU {cpu / n * 1e6:.0f} us/task"
    )
    print("(CPU counts start-up too: a few hundred ms)")
    _print_folded(output)


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _print_folded(path: Any) -> None:
    """py-spy's raw stacks as the share of samples per function (itself / with callees),
    start-up imports left out."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in open(path):
        stack, _, samples = line.rstrip().rpartition(" ")
        frames = [re.sub(r":\d+\)", ")", frame) for frame in stack.split(";")]
        if any("importlib" in frame for frame in frames):
            continue
        total += int(samples)
        own[frames[-1]] += int(samples)
        for frame in set(frames):
            inclusive[frame] += int(samples)
    for title, counter in (("itself", own), ("with callees", inclusive)):
        print(f"--- share of GIL-holding samples, {title}")
        for frame, count in counter.most_common(TOP):
            print(f"{count / total * 100:5.1f}%  {frame}")


def main(argv: list[str]) -> None:
    what = argv[0] if argv else "db"
    env = BenchEnv()
    try:
        env.setup_django()
        from .sections.common import bench_user

        user, _ = bench_user()
        if what in ("submit", "batch"):
            profile_submits(user, batch=what == "batch", n=10000 if what == "batch" else 3000)
        elif what == "db":
            profile_db_side(user, 20000)
        elif what == "worker":
            profile_worker(env, user, 40000)
        elif what in ("django", "django-async"):
            from .sections.django import FUNCTIONS

            kind = "async" if what == "django-async" else "sync"
            profile_worker(env, user, 20000, FUNCTIONS[kind])
        else:
            sys.exit(__doc__)
    finally:
        env.close()


if __name__ == "__main__":
    main(sys.argv[1:])
