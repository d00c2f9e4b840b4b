"""Schedules across two real worker processes: each due time fired once, over many due times
and after a pause (the "once" catch-up policy)."""

from __future__ import annotations

import itertools
import time
from datetime import datetime
from pathlib import Path

from tests.stack import Stack, wait_for


def test_two_workers_fire_each_due_time_once_also_after_a_pause(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "stack", {"CLAWSITE_SCHEDULE_CHECK_SECONDS": "0.1"})
    stack.migrate()
    stack.token("alice")
    stack.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; from django.utils import timezone; "
        "from tasks_app.models import Schedule; "
        "Schedule.objects.create(name='tick', owner=User.objects.get(username='alice'), "
        "tool='file_info', args={'path': 'x'}, interval_seconds=1, "
        "next_run_at=timezone.now())",
    )

    def fired() -> list[str]:
        out = stack.manage(
            "shell",
            "-c",
            "from tasks_app.models import Task; "
            "print('\\n'.join(Task.objects.filter(schedule__name='tick')"
            ".values_list('idempotency_key', flat=True)))",
        )
        return [line for line in out.splitlines() if line.startswith("schedule-")]

    try:
        stack.start_worker()
        stack.start_worker()
        wait_for(lambda: len(fired()) >= 6, 120, 0.5, "six runs")
        for worker in stack.workers:
            worker.terminate()
            worker.wait(60)
        before = len(fired())
        time.sleep(4)  # four due times pass with no worker: one run for all of them ("once")
        stack.start_worker()
        stack.start_worker()
        wait_for(lambda: len(fired()) >= before + 4, 120, 0.5, "four more runs")
    finally:
        stack.stop()
    keys = fired()
    dues = sorted(datetime.strptime(k.split("-", 2)[2], "%Y-%m-%dT%H:%M:%S.%f%z") for k in keys)
    assert len(set(keys)) == len(keys)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(dues)]
    # On the grid; the pause is one gap of several seconds, not four runs.
    assert all(abs(g - round(g)) < 1e-6 and g >= 1 for g in gaps), gaps
    assert max(gaps) >= 4
    out = stack.manage(
        "shell",
        "-c",
        "from tasks_app.models import Schedule; s = Schedule.objects.get(name='tick'); "
        "print(s.runs_fired, s.runs_skipped)",
    )
    assert out.strip().splitlines()[-1].split() == [str(len(keys)), "0"]
