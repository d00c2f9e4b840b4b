"""Results the store can hold, or a clean failure: a tool result with NUL, a lone surrogate, a
non-finite number or too many bytes fails its own task with ``invalid_result`` and never holds
up the completions written with it (on PostgreSQL a NUL in a result wedged the worker: its
completion batch failed, was put back and failed again, for ever). Websocket frames carry
capped results."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any, ClassVar

import pytest
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.utils import timezone

from clawsite.asgi import application
from tasks_app import store
from tasks_app.db import run_in_db_thread
from tasks_app.models import Task, TaskStatus
from tasks_app.worker import WorkerEngine
from tests.tools_for_tests import await_task, submit
from tools_app.registry import _REGISTRY, Tool, ToolArgs, ToolContext

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

POISONS: dict[str, Any] = {
    "nul": {"body": "a\x00b"},
    "surrogate": {"stdout": "\udc80"},
    "nul_key": {"a\x00": 1},
    "nan": {"x": float("nan")},
    "not_json": {"x": b"bytes"},
    "big": {"body": "x" * 5000},
}


class PoisonArgs(ToolArgs):
    kind: str


class PoisonTool(Tool):
    """Answers the result named by ``kind`` (``ok``: a plain one)."""

    name: ClassVar[str] = "test_poison"
    description: ClassVar[str] = "test only"
    Args = PoisonArgs

    async def run(self, args: PoisonArgs, ctx: ToolContext) -> dict[str, Any]:
        return POISONS.get(args.kind, {"ok": args.kind})


@pytest.fixture
def poison_tool() -> Iterator[None]:
    _REGISTRY[PoisonTool.name] = PoisonTool()
    yield
    _REGISTRY.pop(PoisonTool.name, None)


@pytest.fixture
async def engine(poison_tool: None, settings: Any) -> AsyncIterator[WorkerEngine]:
    settings.CLAWSITE_MAX_RESULT_BYTES = 4096
    engine = WorkerEngine(concurrency=8, tick_seconds=0.05, lease_seconds=3)
    await engine.start()
    yield engine
    await engine.stop(grace_seconds=0)


async def test_unstorable_results_fail_their_task_and_the_others_succeed(
    engine: WorkerEngine, alice: Any, bob: Any
) -> None:
    bad = [
        await run_in_db_thread(submit, alice, tool="test_poison", args={"kind": kind})
        for kind in POISONS
    ]
    good = [
        await run_in_db_thread(submit, bob, tool="test_poison", args={"kind": f"fine{i}"})
        for i in range(20)
    ]
    for task in bad:
        done = await await_task(task.id)
        assert done.status == TaskStatus.FAILED, (done.args, done.result)
        assert done.error["type"] == "invalid_result" and done.error["message"]
        assert done.result is None
    for i, task in enumerate(good):
        done = await await_task(task.id)
        assert done.status == TaskStatus.SUCCEEDED and done.result == {"ok": f"fine{i}"}
    # The worker goes on: another task after the poisons.
    after = await run_in_db_thread(submit, bob, tool="test_poison", args={"kind": "after"})
    assert (await await_task(after.id)).result == {"ok": "after"}


@pytest.mark.parametrize("poison", [{"x": b"bytes"}, {"x": "a\x00b"}, {"x": "\udc80"}])
def test_a_completion_the_database_refuses_is_written_as_failed(
    alice: Any, bob: Any, poison: dict[str, Any]
) -> None:
    """Past the checks, should a value still be refused when written (bytes: not JSON; NUL and
    a lone surrogate: refused by PostgreSQL's jsonb, kept escaped by SQLite), only its task
    fails; the batch's other end is written."""
    now = timezone.now()
    for user in (alice, bob):
        submit(user, tool="list_directory", args={})
    claimed = store.claim_runnable_tasks("w1", 10, now, timedelta(seconds=30))
    poisoned, fine = sorted(claimed, key=lambda t: t.owner_id != alice.id)
    completions = [
        store.Completion(task=poisoned, status=TaskStatus.SUCCEEDED, result=poison),
        store.Completion(task=fine, status=TaskStatus.SUCCEEDED, result={"x": "fine"}),
    ]
    for completion in completions:
        completion.finished_at = now
    written = store.complete_tasks("w1", completions)
    assert {t.id for t in written} == {poisoned.id, fine.id}
    rows = {t.id: t for t in Task.objects.all()}
    assert rows[fine.id].status == TaskStatus.SUCCEEDED and rows[fine.id].result == {"x": "fine"}
    if isinstance(poison["x"], str) and connection.vendor == "sqlite":
        return  # SQLite stores JSON text with the escape: nothing was refused
    refused = rows[poisoned.id]
    assert refused.status == TaskStatus.FAILED and refused.error["type"] == "invalid_result"
    assert refused.result is None and len(refused.attempt_log) == 1
    assert refused.version == poisoned.version  # as written, once


async def test_websocket_frames_leave_large_results_out(
    engine: WorkerEngine, alice: Any, settings: Any
) -> None:
    settings.CLAWSITE_MAX_RESULT_BYTES = 1_000_000
    settings.CLAWSITE_WS_MAX_RESULT_BYTES = 1000
    ws = WebsocketCommunicator(
        application,
        "/ws/tasks/",
        headers=[(b"authorization", f"Bearer {alice.raw_token}".encode())],
    )
    assert (await ws.connect())[0]
    big = await run_in_db_thread(submit, alice, tool="test_poison", args={"kind": "big"})
    small = await run_in_db_thread(submit, alice, tool="test_poison", args={"kind": "small"})
    seen: dict[str, dict[str, Any]] = {}
    while not all(t in seen and seen[t]["status"] == "succeeded" for t in (big.id, small.id)):
        frame = await ws.receive_json_from(timeout=10)
        for task in frame["tasks"] if frame["type"] == "task.updates" else [frame["task"]]:
            if task["version"] > seen.get(task["id"], {}).get("version", 0):
                seen[task["id"]] = task
    assert seen[big.id]["result"] is None and seen[big.id]["result_omitted"] is True
    assert seen[big.id]["url"] == f"/api/v1/tasks/{big.id}"
    assert seen[small.id]["result"] == {"ok": "small"} and "result_omitted" not in seen[small.id]
    stored = await run_in_db_thread(Task.objects.get, pk=big.id)
    assert stored.result == POISONS["big"]  # stored whole; only the frame leaves it out
    await ws.disconnect()
