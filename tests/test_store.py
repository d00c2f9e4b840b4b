"""The hot path's SQL (tasks_app.store) and the reaper, on SQLite and, with
DATABASE_URL=postgres://..., on PostgreSQL (`make test` runs this file on both)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from tasks_app import store
from tasks_app.models import Task, TaskStatus
from tasks_app.services import reap_expired_leases
from tasks_app.store import Completion

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

LEASE = timedelta(seconds=30)


def make_tasks(owner: Any, specs: list[dict[str, Any]]) -> list[Task]:
    base = timezone.now() - timedelta(minutes=1)
    tasks = [
        Task(
            owner=owner,
            tool="read_file",
            args={"path": f"f{i}"},
            created_at=base + timedelta(milliseconds=i),
            **spec,
        )
        for i, spec in enumerate(specs)
    ]
    with transaction.atomic():
        store.insert_tasks(tasks)
    return tasks


def claim(worker: str, limit: int, now: Any = None) -> list[Task]:
    with transaction.atomic():
        return store.claim_runnable_tasks(worker, limit, now or timezone.now(), LEASE)


def complete(worker: str, completions: list[Completion]) -> list[Task]:
    with transaction.atomic():
        return store.complete_tasks(worker, completions)


def test_claim_takes_highest_priority_first_then_oldest(alice: Any) -> None:
    priorities = [0, 5, -3, 5, 100, 0, -100, 5]
    tasks = make_tasks(alice, [{"priority": p} for p in priorities])
    expected = [t.id for t in sorted(tasks, key=lambda t: (-t.priority, t.created_at))]
    order = []
    while batch := claim("w1", 3):
        order += [t.id for t in batch]
    assert order == expected


def test_claim_moves_rows_to_running_for_the_worker(alice: Any) -> None:
    (task,) = make_tasks(alice, [{}])
    now = timezone.now()
    (claimed,) = claim("w1", 10, now)
    row = Task.objects.get(pk=task.id)
    for seen in (claimed, row):
        assert seen.status == TaskStatus.RUNNING and seen.worker_id == "w1"
        assert seen.attempts == 1 and seen.version == 2
        assert seen.started_at == now and seen.lease_expires_at == now + LEASE
    assert claim("w2", 10) == []


def test_claim_honours_run_after(alice: Any) -> None:
    now = timezone.now()
    later, due = make_tasks(
        alice,
        [{"run_after": now + timedelta(seconds=60)}, {"run_after": now - timedelta(seconds=1)}],
    )
    assert [t.id for t in claim("w1", 10, now)] == [due.id]
    assert claim("w1", 10, now + timedelta(seconds=59)) == []
    assert [t.id for t in claim("w1", 10, now + timedelta(seconds=61))] == [later.id]


def test_claim_leaves_tasks_that_are_not_queued(alice: Any) -> None:
    make_tasks(
        alice,
        [
            {"status": s}
            for s in (
                TaskStatus.SUCCEEDED,
                TaskStatus.FAILED,
                TaskStatus.CANCELLED,
                TaskStatus.RUNNING,
            )
        ],
    )
    assert claim("w1", 10) == []


@pytest.mark.skipif("connection.vendor != 'sqlite'")
def test_claim_walks_the_claim_index_without_sorting(alice: Any) -> None:
    make_tasks(alice, [{"priority": p % 7} for p in range(50)])
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
        cursor.execute(
            "EXPLAIN QUERY PLAN " + store.claim_sql(),
            [TaskStatus.RUNNING, "w", now, now, False, now, 10],
        )
        plan = " | ".join(row[-1] for row in cursor.fetchall())
    assert "USING INDEX task_claim_idx" in plan
    assert "TEMP B-TREE" not in plan


def test_late_finish_of_a_lost_attempt_never_overwrites_the_new_one(alice: Any) -> None:
    (task,) = make_tasks(alice, [{}])
    (first,) = claim("w1", 1)
    # w1 stops renewing; the reaper gives the task back, w2 claims it.
    reaped = reap_expired_leases(timezone.now() + LEASE + timedelta(seconds=1))
    assert [t.id for t in reaped] == [task.id]
    late_before_reclaim = Completion(task=Task.objects.get(pk=task.id), status=TaskStatus.SUCCEEDED)
    (second,) = claim("w2", 1)
    assert second.attempts == 2

    # w1 finishes late: nothing written, nothing reported.
    assert (
        complete("w1", [Completion(task=first, status=TaskStatus.SUCCEEDED, result={"from": "w1"})])
        == []
    )
    assert complete("w1", [late_before_reclaim]) == []
    row = Task.objects.get(pk=task.id)
    assert row.status == TaskStatus.RUNNING and row.worker_id == "w2" and row.result is None

    # w2's finish is written, with both attempts in the history.
    (written,) = complete(
        "w2", [Completion(task=second, status=TaskStatus.SUCCEEDED, result={"from": "w2"})]
    )
    row = Task.objects.get(pk=task.id)
    assert (
        row.status == TaskStatus.SUCCEEDED
        and row.result == {"from": "w2"}
        and row.version == written.version
    )
    assert [
        (e["attempt"], e["worker_id"], (e["error"] or {}).get("type")) for e in row.attempt_log
    ] == [
        (1, "w1", "lost"),
        (2, "w2", None),
    ]


def test_a_batch_with_one_fenced_row_writes_and_reports_the_others(alice: Any) -> None:
    make_tasks(alice, [{}, {}, {}])
    claimed = claim("w1", 3)
    Task.objects.filter(pk=claimed[1].id).update(worker_id="w2")  # taken over meanwhile
    written = complete(
        "w1", [Completion(task=t, status=TaskStatus.SUCCEEDED, result={}) for t in claimed]
    )
    assert [t.id for t in written] == [claimed[0].id, claimed[2].id]
    assert Task.objects.get(pk=claimed[1].id).status == TaskStatus.RUNNING


def test_a_completion_written_again_after_a_failure_is_logged_once(alice: Any) -> None:
    make_tasks(alice, [{}])
    [task] = claim("w1", 1)
    done = Completion(task=task, status=TaskStatus.SUCCEEDED, result={"ok": 1})
    with pytest.raises(RuntimeError), transaction.atomic():  # the database went away mid-write
        store.complete_tasks("w1", [done])
        raise RuntimeError
    [written] = complete("w1", [done])  # the worker's next round trip writes it again
    row = Task.objects.get(pk=task.pk)
    assert row.status == TaskStatus.SUCCEEDED and row.version == written.version == task.version
    assert len(row.attempt_log) == 1 and row.version == 3  # queued 1, claimed 2, finished 3


def test_reaper_requeues_while_attempts_remain_then_fails_as_lost(alice: Any) -> None:
    (task,) = make_tasks(alice, [{"max_attempts": 2}])
    for attempt in (1, 2):
        claim("w1", 1)
        reap_expired_leases(timezone.now() + LEASE + timedelta(seconds=1))
        row = Task.objects.get(pk=task.id)
        assert row.attempts == attempt
    assert row.status == TaskStatus.FAILED
    assert row.error["type"] == "lost" and row.finished_at is not None
    assert len(row.attempt_log) == 2
    assert claim("w1", 1) == []


def test_reaper_leaves_live_leases_and_cancels_what_was_asked(alice: Any) -> None:
    live, asked = make_tasks(alice, [{}, {}])
    claim("w1", 2)
    assert reap_expired_leases(timezone.now()) == []
    Task.objects.filter(pk=asked.id).update(cancel_requested=True)
    reap_expired_leases(timezone.now() + LEASE + timedelta(seconds=1))
    assert Task.objects.get(pk=asked.id).status == TaskStatus.CANCELLED
    assert Task.objects.get(pk=live.id).status == TaskStatus.QUEUED


def test_requeue_at_shutdown_keeps_the_budget(alice: Any) -> None:
    (task,) = make_tasks(alice, [{"max_attempts": 1}])
    (claimed,) = claim("w1", 1)
    completion = Completion(
        task=claimed,
        status=TaskStatus.QUEUED,
        max_attempts=2,
        error={"type": "worker_shutdown", "message": ""},
    )
    complete("w1", [completion])
    row = Task.objects.get(pk=task.id)
    assert (row.status, row.attempts, row.max_attempts, row.error) == (
        TaskStatus.QUEUED,
        1,
        2,
        None,
    )
    assert row.attempt_log[0]["error"]["type"] == "worker_shutdown"


def test_progress_is_fenced_like_completions(alice: Any) -> None:
    (task,) = make_tasks(alice, [{}])
    (claimed,) = claim("w1", 1)
    claimed.progress, claimed.version = {"done": 1, "total": 2, "message": ""}, claimed.version + 1
    with transaction.atomic():
        store.record_progress("w2", [claimed])
    assert Task.objects.get(pk=task.id).progress is None
    with transaction.atomic():
        store.record_progress("w1", [claimed])
    assert Task.objects.get(pk=task.id).progress == {"done": 1, "total": 2, "message": ""}


def test_concurrent_claimers_take_disjoint_tasks(alice: Any) -> None:
    tasks = make_tasks(alice, [{"priority": i % 3} for i in range(300)])
    taken: dict[str, list[str]] = {"a": [], "b": []}
    errors: list[BaseException] = []

    def claimer(name: str) -> None:
        try:
            while batch := claim(name, 7):
                taken[name] += [t.id for t in batch]
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=claimer, args=(name,)) for name in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert not set(taken["a"]) & set(taken["b"])
    assert sorted(taken["a"] + taken["b"]) == sorted(t.id for t in tasks)
    assert Task.objects.filter(attempts=1, status=TaskStatus.RUNNING).count() == 300


def test_a_claim_cannot_slip_between_a_cancels_read_and_its_write(
    alice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """services.cancel_task reads the row, then writes it. select_for_update locks the row on
    PostgreSQL (the claim's SKIP LOCKED passes it by) and does nothing on SQLite, where the
    IMMEDIATE transaction holds the write lock from BEGIN: a claim started in between waits,
    then finds the task cancelled. Without either, the claim would take the task meanwhile."""
    from tasks_app import services

    [task] = make_tasks(alice, [{}])
    read_done, claimed = threading.Event(), []
    write = Task.mark_cancelled

    def mark_cancelled_later(self: Task, *args: Any, **kwargs: Any) -> None:
        read_done.set()
        time.sleep(0.5)  # the window a claim would need, had the read left the row free
        write(self, *args, **kwargs)

    def claimer() -> None:
        read_done.wait(10)
        try:
            claimed.extend(claim("w1", 1))
        finally:
            connection.close()

    monkeypatch.setattr(Task, "mark_cancelled", mark_cancelled_later)
    thread = threading.Thread(target=claimer)
    thread.start()
    services.cancel_task(task)
    thread.join(timeout=60)
    assert claimed == []
    row = Task.objects.get(pk=task.id)
    assert (row.status, row.attempts) == (TaskStatus.CANCELLED, 0)
