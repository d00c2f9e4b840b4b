"""The hot path's batching machinery: group commit, the SQLite write lock, the event hub's
hand-over from other threads, the primary-key lookup and the positional constructor."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from tasks_app import events, services, store
from tasks_app.db import GroupCommit, run_in_db_thread, write_lock
from tasks_app.errors import ApiError
from tasks_app.models import Task

pytestmark = pytest.mark.django_db(transaction=True)


def validated(user: Any, **fields: Any) -> Any:
    return services.validate_submission({"tool": "list_directory", "args": {}, **fields}, user)


async def test_group_commit_runs_concurrent_calls_together_and_answers_each() -> None:
    groups: list[list[int]] = []
    release = threading.Event()

    def run_many(items: list[int]) -> list[int | Exception]:
        if not groups:
            release.wait(10)  # hold the first group until the others have queued behind it
        groups.append(items)
        return [ValueError(item) if item == 3 else item * 10 for item in items]

    group = GroupCommit(run_many)
    calls = [asyncio.ensure_future(group(i)) for i in range(5)]
    await asyncio.sleep(0)  # every call is queued; the first is already on its way
    release.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert results[:3] == [0, 10, 20] and results[4] == 40
    assert isinstance(results[3], ValueError)
    assert sorted(i for g in groups for i in g) == [0, 1, 2, 3, 4]
    assert len(groups) < 5  # not one round trip per call


async def test_group_commit_failure_of_the_whole_group_reaches_every_caller() -> None:
    def run_many(items: list[int]) -> list[int]:
        raise RuntimeError("database away")

    group = GroupCommit(run_many)
    results = await asyncio.gather(group(1), group(2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert await GroupCommit[int, int](lambda items: items)(7) == 7  # a new group works afterwards


def test_submit_grouped_isolates_a_conflicting_request(alice: Any, bob: Any) -> None:
    services.submit_tasks(alice, [validated(alice, idempotency_key="k")])
    results = services.submit_grouped(
        [
            (bob, [validated(bob)]),
            (alice, [validated(alice, idempotency_key="k", priority=5)]),  # same key, other content
            (alice, [validated(alice)]),
        ]
    )
    assert isinstance(results[1], ApiError) and results[1].code == "conflict"
    created = [task for result in (results[0], results[2]) for task, new in result if new]
    assert len(created) == 2
    assert Task.objects.count() == 3  # the first one, plus bob's and alice's second


def test_submit_grouped_without_keys_writes_every_request_in_order(alice: Any, bob: Any) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        results = services.submit_grouped(
            [(alice, [validated(alice), validated(alice)]), (bob, [validated(bob)])]
        )
    inserts = [q for q in queries.captured_queries if "INSERT INTO" in q["sql"]]
    assert len(inserts) == 1 and not any("SAVEPOINT" in q["sql"] for q in queries)
    [alices, bobs] = results
    rows = {t.id: t for t in Task.objects.all()}
    assert [rows[t.id].owner_id for t, _ in alices] == [alice.id, alice.id]
    assert [rows[t.id].owner_id for t, _ in bobs] == [bob.id]
    created = [rows[t.id].created_at for result in results for t, _ in result]
    assert created == sorted(set(created))  # distinct, in the order of arrival


def test_fetch_task_is_scoped_to_the_owner_and_decodes_like_the_orm(alice: Any, bob: Any) -> None:
    [(task, _)] = services.submit_tasks(alice, [validated(alice, args={"path": "."})])
    assert store.fetch_task(task.id, bob.pk) is None
    assert store.fetch_task("no-such-id") is None
    mine, anyones, orm = (
        store.fetch_task(task.id, alice.pk),
        store.fetch_task(task.id),
        Task.objects.get(pk=task.id),
    )
    for field in Task._meta.concrete_fields:
        assert (
            getattr(mine, field.attname)
            == getattr(orm, field.attname)
            == getattr(anyones, field.attname)
        )
    assert not mine._state.adding


def test_new_task_has_the_model_defaults(alice: Any) -> None:
    fast, slow = store.new_task(owner_id=alice.pk, tool="t"), Task(owner=alice, tool="t")
    for field in Task._meta.concrete_fields:
        if field.attname not in ("id", "created_at"):
            assert getattr(fast, field.attname) == getattr(slow, field.attname), field.attname
    assert fast.id != store.new_task(owner_id=alice.pk, tool="t").id
    assert fast._state.adding and fast.args == {} and fast.args is not store.new_task(tool="t").args
    assert fast.__dict__.keys() == slow.__dict__.keys()
    assert fast.owner == alice  # the relation loads like any model's
    fast.save()  # and the ORM takes it as a new row
    assert Task.objects.get(pk=fast.pk).tool == "t"


def test_write_lock_lets_one_holder_in_at_a_time() -> None:
    acquired = threading.Event()

    def second_holder() -> None:
        with write_lock():
            acquired.set()

    with write_lock():
        other = threading.Thread(target=second_holder)
        other.start()
        assert not acquired.wait(0.3)
    assert acquired.wait(10)
    other.join(10)


async def test_events_from_another_thread_arrive_once_at_their_newest_version(
    alice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[list[dict[str, Any]]] = []
    woken: list[str] = []
    arrived = asyncio.Event()

    async def capture(payloads: list[dict[str, Any]]) -> None:
        sent.append(payloads)
        arrived.set()

    async def capture_wakeup(group: str, message: dict[str, Any]) -> None:
        woken.append(message["type"])

    monkeypatch.setattr(events, "send_updates", capture)
    monkeypatch.setattr(events, "_safe_group_send", capture_wakeup)
    events.bind_event_loop()
    [(task, _)] = await run_in_db_thread(services.submit_tasks, alice, [validated(alice)])

    def publish_from_thread() -> None:
        task.version = 7
        events.publish_task_changes([task])
        task.version = 8
        events.publish_task_changes([task], wake=True)

    await run_in_db_thread(publish_from_thread)
    await asyncio.wait_for(arrived.wait(), 10)
    await asyncio.sleep(events.FLUSH_SECONDS * 3)  # let any stray second flush show itself
    versions = [p["version"] for batch in sent for p in batch if p["id"] == task.id]
    assert versions[-1] == 8 and 7 not in versions
    assert woken and set(woken) == {"task.wakeup"}


async def test_the_checkpointer_copies_the_log_into_the_database_file(alice: Any) -> None:
    """Commits never wait for a checkpoint: a thread of the process runs them. Its effect: a
    committed row reaches the database file itself (read here ignoring the log) within moments."""
    import sqlite3
    import time

    from django.db import connection

    from tasks_app.db.checkpointer import Checkpointer

    if connection.vendor != "sqlite":
        pytest.skip("SQLite's write-ahead log only")
    await run_in_db_thread(lambda: None)  # the process's database threads start it
    assert Checkpointer._running is not None and Checkpointer._running.is_alive()
    [(task, _)] = await run_in_db_thread(services.submit_tasks, alice, [validated(alice)])
    path = connection.settings_dict["NAME"]

    def in_database_file() -> bool:
        with sqlite3.connect(f"file:{path}?immutable=1", uri=True) as database:
            try:
                found = database.execute("SELECT 1 FROM tasks_app_task WHERE id = ?", [task.id])
            except sqlite3.OperationalError:  # not even the table is out of the log yet
                return False
            return found.fetchone() is not None

    deadline = time.monotonic() + 10
    while not in_database_file():
        assert time.monotonic() < deadline, "the row never left the write-ahead log"
        await asyncio.sleep(0.1)
