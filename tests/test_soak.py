"""The long variant (`make soak`): 10,000 tasks under a SIGKILL every few seconds, printing the
ledger's summary. Marked ``soak``: not part of `make test` (tests/test_kill.py is the CI variant)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.kill_helpers import (
    Kills,
    check_ledger,
    executions,
    kill_loop,
    ledger_file,
    ledger_stack,
    submit_ledger_tasks,
    wait_terminal,
)

pytestmark = [pytest.mark.soak, pytest.mark.timeout(1800)]

SOAK_TASKS = 10_000


def test_soak_kill_9_every_few_seconds(tmp_path: Path) -> None:
    stack, token = ledger_stack(tmp_path)
    try:
        workers = [stack.start_worker(), stack.start_worker()]
        started = time.monotonic()
        keys = [f"k{i}" for i in range(SOAK_TASKS)]
        # More attempts than kills (see test_kill: a requeued task is claimed first again).
        tasks = submit_ledger_tasks(stack, token, keys, args={"seconds": 0.05}, max_attempts=100)
        ids = {t["id"]: t["args"]["key"] for t in tasks}
        path, kills = ledger_file(stack), Kills()
        kill_loop(
            stack,
            workers,
            path,
            kills,
            rounds=10_000,
            pause=(1.0, 3.0),
            done=lambda: len(executions(path)) == SOAK_TASKS,
        )
        final = wait_terminal(stack, token, list(ids), within=600)
        figures = check_ledger(final, ids, path, kills)
        figures["wall_s"] = round(time.monotonic() - started, 1)
        print("\nSOAK LEDGER SUMMARY", json.dumps(figures))
        assert figures["lost"] == 0 and figures["kills"] >= 5
    finally:
        stack.stop()
    assert "database is locked" not in stack.log_text()
