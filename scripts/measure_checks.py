"""Measure what the hostile-input checks add to the hot paths (issue 11), each check alone:
per submitted task (arguments, names, run_after), per request body (depth, NaN), per finished
task (the result) and per websocket payload (the result's size).

    .venv/bin/python scripts/measure_checks.py

In-process, no database or Redis touched; best of 7 ``timeit`` repetitions, in microseconds.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clawsite.settings")
os.environ.setdefault("CLAWSITE_DATA_DIR", tempfile.mkdtemp(prefix="clawsite-checks-"))

import django

django.setup()

from tasks_app import safejson, store  # noqa: E402
from tasks_app.schemas import _in_utc  # noqa: E402
from tasks_app.serializers import task_to_dict, task_to_frame  # noqa: E402


def per_call(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6


def main() -> None:
    args = {"n": 12345}
    single = json.dumps({"tool": "bench_noop", "args": args}).encode()
    batch = json.dumps(
        {"tasks": [{"tool": "bench_noop", "args": {"n": i}} for i in range(100)]}
    ).encode()
    now = datetime.now(UTC)
    task = store.new_task(
        owner_id=1, tool="bench_noop", args=args, result=args, created_at=now, timeout=30.0
    )
    task.id = "x"
    rows = [
        ("submit: check_storable(args)", per_call(lambda: safejson.check_storable(args), 200_000)),
        (
            "submit: tool and key check_text + run_after in UTC",
            per_call(lambda: (safejson.check_text("bench_noop"), _in_utc(now)), 200_000),
        ),
        ("body: json.loads, one task", per_call(lambda: json.loads(single), 100_000)),
        ("body: safejson.loads, one task", per_call(lambda: safejson.loads(single), 100_000)),
        ("body: json.loads, 100 tasks", per_call(lambda: json.loads(batch), 2_000)),
        ("body: safejson.loads, 100 tasks", per_call(lambda: safejson.loads(batch), 2_000)),
        (
            "drain: check_result",
            per_call(lambda: safejson.check_result(args, 10 << 20), 200_000),
        ),
        ("drain: task_to_dict", per_call(lambda: task_to_dict(task), 100_000)),
        ("drain: task_to_frame", per_call(lambda: task_to_frame(task), 100_000)),
    ]
    for name, micros in rows:
        print(f"{name:55} {micros:8.2f} us")


if __name__ == "__main__":
    main()
