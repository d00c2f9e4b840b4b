"""Queue statistics: the numbers equal the rows, per persona, everywhere they are shown."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from django.db.models import Count
from django.test import AsyncClient
from django.utils import timezone

from clawsite.asgi import application
from tasks_app.models import Task, TaskStatus, WorkerHeartbeat
from tasks_app.stats import WINDOW, get_history, get_queue_stats, get_stats, percentile

pytestmark = pytest.mark.django_db(transaction=True)

# The contract's keys, "queues" (per-queue counts, added with named queues) and "sources" (per
# source: api, page, mcp...).
CONTRACT_KEYS = {"queue", "throughput_per_s", "latency_ms", "workers", "cache", "queues", "sources"}


def populate(owner: Any, counts: dict[str, int], latency_s: float = 1.0) -> list[Task]:
    """``counts`` tasks per status; the finished ones finished just now, ``latency_s`` after
    their creation."""
    now = timezone.now()
    tasks = []
    for status, n in counts.items():
        for _ in range(n):
            finished = status in ("succeeded", "failed", "cancelled")
            tasks.append(
                Task(
                    owner=owner,
                    tool="read_file",
                    args={"path": "a"},
                    status=status,
                    created_at=now - timedelta(seconds=latency_s),
                    finished_at=now if finished else None,
                )
            )
    return Task.objects.bulk_create(tasks)


def test_counts_equal_the_rows_per_persona(alice: Any, bob: Any, carol: Any) -> None:
    populate(alice, {"queued": 3, "running": 2, "succeeded": 4, "failed": 1})
    populate(bob, {"queued": 1, "cancelled": 2})
    assert get_queue_stats(alice)["queue"] == {
        "queued": 3,
        "running": 2,
        "succeeded": 4,
        "failed": 1,
        "cancelled": 0,
    }
    assert get_queue_stats(bob)["queue"] == {
        "queued": 1,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "cancelled": 2,
    }
    expected = {
        row["status"]: row["n"] for row in Task.objects.values("status").annotate(n=Count("id"))
    }
    assert get_queue_stats(carol)["queue"] == {s: expected.get(s, 0) for s in TaskStatus.values}
    assert get_queue_stats(None)["queue"] == get_queue_stats(carol)["queue"]


def test_throughput_and_latency_over_the_window(alice: Any) -> None:
    populate(alice, {"succeeded": 9}, latency_s=0.1)
    populate(alice, {"failed": 1}, latency_s=5.0)
    # Finished before the window: not counted.
    old = populate(alice, {"succeeded": 5}, latency_s=100)
    Task.objects.filter(pk__in=[t.pk for t in old]).update(
        finished_at=timezone.now() - WINDOW - timedelta(seconds=10)
    )
    stats = get_queue_stats(alice)
    assert stats["throughput_per_s"] == round(10 / WINDOW.total_seconds(), 3)
    assert stats["latency_ms"]["p50"] == pytest.approx(100, abs=1)
    assert stats["latency_ms"]["p95"] == pytest.approx(5000, abs=1)


def test_history_reads_the_past_from_the_rows(alice: Any) -> None:
    tasks = populate(alice, {"succeeded": 6}, latency_s=1.0)
    Task.objects.filter(pk__in=[t.pk for t in tasks]).update(
        finished_at=timezone.now() - timedelta(minutes=2),
        created_at=timezone.now() - timedelta(minutes=2, seconds=1),
    )
    history = get_history(points=5, step=timedelta(minutes=1))
    assert [h["throughput_per_s"] for h in history] == [0, 0, 0.02, 0.02, 0.02]
    assert history[0]["latency_ms"]["p50"] is None and history[-1]["latency_ms"][
        "p50"
    ] == pytest.approx(1000, abs=5)
    assert history[0]["t"] < history[-1]["t"]


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([1.0], 0.95) == 1.0
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.5) == 50 and percentile(values, 0.95) == 95


def test_empty_queue_has_no_latency(alice: Any) -> None:
    stats = get_stats(alice)
    assert set(stats) == CONTRACT_KEYS
    assert stats["latency_ms"] == {"p50": None, "p95": None} and stats["throughput_per_s"] == 0
    assert {"hits", "misses", "hit_ratio", "keys", "by_tool"} <= set(stats["cache"])


def test_workers_come_from_heartbeats(alice: Any) -> None:
    WorkerHeartbeat.objects.create(worker_id="w-1", hostname="h", pid=1, running=3)
    WorkerHeartbeat.objects.create(
        worker_id="w-old", hostname="h", pid=2, last_heartbeat=timezone.now() - timedelta(hours=1)
    )
    workers = {w["id"]: w for w in get_queue_stats()["workers"]}
    assert get_queue_stats(alice)["workers"] == []  # hosts and pids: not a user's business
    assert (
        workers["w-1"]["running"] == 3
        and workers["w-1"]["alive"]
        and workers["w-1"]["last_heartbeat"].endswith("Z")
    )
    assert not workers["w-old"]["alive"]


def test_status_counts_use_an_index_only_scan(carol: Any) -> None:
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("the plan's wording is SQLite's")
    plan = Task.objects.order_by().values("status").annotate(n=Count("status")).explain()
    # task_claim_idx: the smallest index that holds every row's status (the status indexes of
    # leases and finished tasks are partial).
    assert "COVERING INDEX task_claim_idx" in plan, plan


def test_the_partial_indexes_serve_the_reaper_and_the_window(carol: Any) -> None:
    """task_lease_idx and task_status_finished_idx only hold rows with a lease / an end (new
    tasks write neither); the queries that need them must still be able to use them."""
    from django.db import connection

    from tasks_app.stats import _recent_finished

    if connection.vendor != "sqlite":
        pytest.skip("the plan's wording is SQLite's")
    now = timezone.now()
    reaper = Task.objects.running().filter(lease_expires_at__lt=now).order_by("lease_expires_at")
    assert "USING INDEX task_lease_idx" in reaper.explain()
    assert "USING INDEX task_status_finished_idx" in _recent_finished(None, now).explain()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, sql FROM sqlite_master WHERE name IN "
            "('task_lease_idx', 'task_status_finished_idx')"
        )
        definitions = dict(cursor.fetchall())
    assert len(definitions) == 2 and all("WHERE" in sql for sql in definitions.values())


async def test_api_stats_per_persona(
    alice: Any, bob: Any, as_alice: AsyncClient, as_carol: AsyncClient
) -> None:
    await Task.objects.acreate(owner=alice, tool="read_file", args={})
    await Task.objects.acreate(owner=bob, tool="read_file", args={})
    await Task.objects.acreate(owner=bob, tool="read_file", args={})
    mine = (await as_alice.get("/api/v1/stats")).json()
    assert set(mine) == CONTRACT_KEYS and mine["queue"]["queued"] == 1
    everyone = (await as_carol.get("/api/v1/stats")).json()
    assert everyone["queue"]["queued"] == 3
    response = await AsyncClient().get("/api/v1/stats")
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"
    assert (await as_alice.post("/api/v1/stats")).status_code == 405


def test_taskstats_command_prints_the_same_numbers(alice: Any) -> None:
    populate(alice, {"queued": 2, "succeeded": 1})
    out = StringIO()
    call_command("taskstats", stdout=out)
    printed = json.loads(out.getvalue())
    assert printed["queue"] == get_queue_stats()["queue"] and set(printed) == CONTRACT_KEYS
    out = StringIO()
    call_command("taskstats", "--format", "table", stdout=out)
    lines = dict(
        line.split(None, 1) for line in out.getvalue().splitlines() if line.startswith("queue.")
    )
    assert lines["queue.queued"].strip() == "2" and lines["queue.succeeded"].strip() == "1"


async def _connect(headers: list[tuple[bytes, bytes]]) -> tuple[bool, WebsocketCommunicator]:
    communicator = WebsocketCommunicator(application, "/ws/stats/", headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    return connected, communicator


async def test_ws_stats_is_staff_only_and_pushes_the_numbers(alice: Any, carol: Any) -> None:
    await Task.objects.acreate(owner=alice, tool="read_file", args={})
    refused, communicator = await _connect(
        [(b"authorization", f"Bearer {alice.raw_token}".encode())]
    )
    assert not refused
    refused, communicator = await _connect([])
    assert not refused
    connected, communicator = await _connect(
        [(b"authorization", f"Bearer {carol.raw_token}".encode())]
    )
    assert connected
    try:
        first = await communicator.receive_json_from(timeout=10)
        assert first["type"] == "stats" and set(first) == CONTRACT_KEYS | {"type"}
        assert first["queue"]["queued"] == 1
        await Task.objects.acreate(owner=alice, tool="read_file", args={})
        # The next frames follow the rows (one a second): wait for the new count.
        for _ in range(10):
            frame = await communicator.receive_json_from(timeout=10)
            if frame["queue"]["queued"] == 2:
                break
        assert frame["queue"]["queued"] == 2
    finally:
        await communicator.disconnect()
