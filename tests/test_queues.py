"""Named queues: the claim of a worker limited to some queues, paused queues, and their query
plans, on SQLite and, with DATABASE_URL=postgres://..., on PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from tasks_app import store
from tasks_app.models import Queue, Task, TaskStatus

from .test_store import LEASE, make_tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def claim(limit: int, queues: list[str], now: Any = None) -> list[Task]:
    with transaction.atomic():
        return store.claim_runnable_tasks("w1", limit, now or timezone.now(), LEASE, queues)


def test_a_queue_worker_claims_only_its_queues_by_priority_then_age(alice: Any) -> None:
    specs = [
        {"queue": q, "priority": p}
        for q, p in [("a", 0), ("b", 50), ("c", 9), ("a", 5), ("b", -1), ("c", 100), ("a", 5)]
    ]
    tasks = make_tasks(alice, specs)
    mine = [t for t in tasks if t.queue in ("a", "b")]
    expected = [t.id for t in sorted(mine, key=lambda t: (-t.priority, t.created_at))]
    order: list[str] = []
    while batch := claim(2, ["a", "b"]):
        assert len(batch) <= 2
        order += [t.id for t in batch]
    assert order == expected
    assert set(Task.objects.queued().values_list("queue", flat=True)) == {"c"}
    assert [t.queue for t in claim(10, ["c"])] == ["c", "c"]


def test_a_one_queue_worker_never_takes_another_queues_task(alice: Any) -> None:
    make_tasks(alice, [{"queue": "b", "priority": 100}, {"queue": "a", "priority": -100}])
    (only,) = claim(10, ["a"])
    assert only.queue == "a" and only.status == TaskStatus.RUNNING
    assert claim(10, ["a"]) == []
    assert Task.objects.get(queue="b").status == TaskStatus.QUEUED


def test_a_paused_queue_runs_nothing_until_resumed(alice: Any) -> None:
    make_tasks(alice, [{"queue": "a"}, {"queue": "b"}, {"queue": "a"}])
    Queue.objects.create(name="a", paused=True)
    assert [t.queue for t in claim(10, [])] == ["b"]
    assert claim(10, ["a"]) == [] and claim(10, ["a", "b"]) == []
    assert Task.objects.filter(queue="a", status=TaskStatus.QUEUED).count() == 2
    Queue.objects.filter(name="a").update(paused=False)
    assert [t.queue for t in claim(10, ["a"])] == ["a", "a"]


def _plan(queues: list[str]) -> list[str]:
    now = timezone.now()
    params: list[Any] = ["running", "w", now, now, False]
    per_walk = [now, 10]
    if not queues:
        params += per_walk
    elif len(queues) == 1:
        params += [queues[0], *per_walk]
    else:
        for queue in queues:
            params += [queue, *per_walk]
        params.append(10)
    sql = store.claim_sql(queues).partition(" RETURNING ")[0]
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("ANALYZE")
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
            return [str(row[-1]) for row in cursor.fetchall()]
        cursor.execute("ANALYZE tasks_app_task")
        cursor.execute("SET enable_seqscan = off")  # a tiny table: show the plan of a big one
        try:
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
            (document,) = cursor.fetchone()
        finally:
            cursor.execute("RESET enable_seqscan")
    plan = json.loads(document) if isinstance(document, str) else document
    nodes: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        nodes.append(f"{node['Node Type']} {node.get('Index Name', '')}".strip())
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return nodes


@pytest.mark.parametrize("queues", [[], ["a"], ["a", "b", "c"]])
def test_the_claim_walks_an_index_in_claim_order(alice: Any, queues: list[str]) -> None:
    """Every queue: task_claim_idx; some queues: task_queue_claim_idx once per queue. No sort
    of the queue: at most a sort of the few candidates of several queues."""
    make_tasks(
        alice,
        [{"queue": "abc"[i % 3], "priority": i % 7} for i in range(60)]
        + [{"status": TaskStatus.SUCCEEDED, "queue": "a"} for _ in range(20)],
    )
    Queue.objects.create(name="z", paused=True)
    plan = _plan(queues)
    index = "task_queue_claim_idx" if queues else "task_claim_idx"
    walks = [step for step in plan if index in step]
    assert len(walks) == max(1, len(queues)), plan
    if connection.vendor == "sqlite":
        sorts = [step for step in plan if "TEMP B-TREE" in step]
        # Several queues: one sort of the merged candidates (at most limit per queue).
        assert len(sorts) == (1 if len(queues) > 1 else 0), plan
    else:
        sorts = [step for step in plan if step.startswith("Sort")]
        assert len(sorts) == (1 if len(queues) > 1 else 0), plan


def test_the_queue_claim_index_holds_only_queued_tasks(alice: Any) -> None:
    make_tasks(alice, [{"queue": "a"}])
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT sql FROM sqlite_master WHERE name = 'task_queue_claim_idx'")
        else:
            cursor.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'task_queue_claim_idx'"
            )
        (definition,) = cursor.fetchone()
    assert "WHERE" in definition and "queued" in definition, definition


def test_claim_of_queues_honours_run_after(alice: Any) -> None:
    now = timezone.now()
    later, due = make_tasks(
        alice,
        [
            {"queue": "a", "run_after": now + timedelta(seconds=60)},
            {"queue": "b", "run_after": now - timedelta(seconds=1)},
        ],
    )
    assert [t.id for t in claim(10, ["a", "b"], now)] == [due.id]
    assert [t.id for t in claim(10, ["a", "b"], now + timedelta(seconds=61))] == [later.id]
