"""/metrics (Prometheus text, right across processes), /healthz, and structured logs."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from tasks_app import metrics
from tasks_app.logs import JsonFormatter, TaskIdFilter
from tasks_app.models import Task, TaskStatus, WorkerHeartbeat
from tests.stack import Stack, free_port, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _metrics_redis_up() -> None:
    metrics._down_until = 0.0  # a previous test's simulated outage must not silence this one


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and labels (parsing fails on a malformed one)."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def get_metrics() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = Client().get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    return scrape(response.content.decode())


def test_gauges_come_from_the_rows(alice: Any) -> None:
    for status, n in (("queued", 3), ("running", 2), ("failed", 1)):
        for _ in range(n):
            Task.objects.create(owner=alice, tool="read_file", args={}, status=status)
    WorkerHeartbeat.objects.create(worker_id="w-1", hostname="h", pid=1, running=2)
    samples = get_metrics()
    assert samples[("clawsite_queue_depth", ())] == 3
    assert samples[("clawsite_tasks_running", ())] == 2
    assert samples[("clawsite_tasks", (("status", "failed"),))] == 1
    assert samples[("clawsite_tasks", (("status", "succeeded"),))] == 0
    assert samples[("clawsite_workers", ())] == 1
    assert samples[("clawsite_worker_running_tasks", (("worker", "w-1"),))] == 2
    beat = WorkerHeartbeat.objects.get().last_heartbeat.timestamp()
    assert samples[
        ("clawsite_worker_last_heartbeat_timestamp_seconds", (("worker", "w-1"),))
    ] == pytest.approx(beat)


def test_submissions_are_counted_by_tool(alice: Any) -> None:
    client = Client()
    client.force_login(alice)
    before = get_metrics().get(("clawsite_tasks_submitted_total", (("tool", "read_file"),)), 0)
    client.post("/tasks/batch", {"lines": '{"tool": "read_file", "args": {"path": "a"}}\n' * 3})
    assert Task.objects.count() == 3
    assert get_metrics()[("clawsite_tasks_submitted_total", (("tool", "read_file"),))] == before + 3


def test_counters_reach_redis_on_their_own_without_a_scrape(alice: Any) -> None:
    """Increments are summed in the process and written by a timer: another process's scrape
    (which cannot flush this one) sees them within a moment."""
    client = metrics._redis()
    key = metrics._key("submitted")
    before = int(client.hget(key, "ledger_probe") or 0)
    metrics.record_submitted([Task(tool="ledger_probe")] * 4)
    metrics.record_submitted([Task(tool="ledger_probe")])
    wait_for(lambda: int(client.hget(key, "ledger_probe") or 0) == before + 5, timeout=5)
    assert metrics._pending.amounts == {} and metrics._pending.timer is None


def test_finished_counters_and_duration_histogram(alice: Any) -> None:
    def finished(status: str, ms: float | None, tool: str = "hash_file") -> Task:
        return Task(owner=alice, tool=tool, status=status, duration_ms=ms)

    metrics.record_finished(
        [
            finished("succeeded", 3),
            finished("succeeded", 700),
            finished("failed", 20_000),
            finished("cancelled", None),
            finished("queued", 5),  # a retry: not an end
        ]
    )
    samples = get_metrics()
    assert (
        samples[("clawsite_tasks_finished_total", (("status", "succeeded"), ("tool", "hash_file")))]
        == 2
    )
    assert (
        samples[("clawsite_tasks_finished_total", (("status", "failed"), ("tool", "hash_file")))]
        == 1
    )
    assert (
        samples[("clawsite_tasks_finished_total", (("status", "cancelled"), ("tool", "hash_file")))]
        == 1
    )
    assert (
        "clawsite_tasks_finished_total",
        (("status", "queued"), ("tool", "hash_file")),
    ) not in samples

    def bucket(le):
        return samples[
            ("clawsite_task_duration_seconds_bucket", (("le", le), ("tool", "hash_file")))
        ]

    assert (
        bucket("0.005") == 1
        and bucket("0.5") == 1
        and bucket("1.0") == 2
        and bucket("10.0") == 2
        and bucket("30.0") == 3
    )
    assert (
        bucket("+Inf")
        == 3
        == samples[("clawsite_task_duration_seconds_count", (("tool", "hash_file"),))]
    )
    assert samples[
        ("clawsite_task_duration_seconds_sum", (("tool", "hash_file"),))
    ] == pytest.approx(20.703)


def test_redis_down_costs_the_counters_only(alice: Any, settings: Any) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    metrics.record_finished([Task(owner=alice, tool="x", status="succeeded", duration_ms=1)])
    metrics.flush()  # no raise
    assert metrics._down_until > 0
    Task.objects.create(owner=alice, tool="read_file", args={})
    samples = get_metrics()
    assert samples[("clawsite_queue_depth", ())] == 1
    assert not any(name.startswith("clawsite_tasks_finished") for name, _ in samples)


# --- /healthz ----------------------------------------------------------------------------------------


def test_healthz_ok_with_a_fresh_worker(alice: Any) -> None:
    WorkerHeartbeat.objects.create(worker_id="w-1", hostname="h", pid=1)
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": {"ok": True},
        "redis": {"ok": True},
        "workers": {"ok": True, "count": 1},
    }


def test_healthz_503_without_a_recent_heartbeat(alice: Any) -> None:
    WorkerHeartbeat.objects.create(
        worker_id="w-old", hostname="h", pid=1, last_heartbeat=timezone.now() - timedelta(hours=1)
    )
    response = Client().get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert (
        body["status"] == "down"
        and body["workers"] == {"ok": False, "count": 0}
        and body["redis"]["ok"]
    )


def test_healthz_503_names_redis_when_it_is_unreachable(alice: Any, settings: Any) -> None:
    WorkerHeartbeat.objects.create(worker_id="w-1", hostname="h", pid=1)
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # a closed port
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "down",
        "database": {"ok": True},
        "redis": {"ok": False},
        "workers": {"ok": True, "count": 1},
    }


# --- logs --------------------------------------------------------------------------------------------


def test_json_logs_carry_the_task_id() -> None:
    record = logging.makeLogRecord(
        {
            "name": "tasks_app.worker",
            "levelname": "ERROR",
            "msg": "task %s failed",
            "args": ("t-1",),
            "task_id": "t-1",
        }
    )
    entry = json.loads(JsonFormatter().format(record))
    assert (
        entry["task_id"] == "t-1"
        and entry["message"] == "task t-1 failed"
        and entry["level"] == "ERROR"
    )
    plain = logging.makeLogRecord({"msg": "hello"})
    TaskIdFilter().filter(plain)
    assert plain.task_id == "-"  # type: ignore[attr-defined]  # set by TaskIdFilter


async def test_logs_inside_a_running_task_name_it() -> None:
    """The worker sets current_task_id in each task's own asyncio task: concurrent tasks' logs
    name their own task, and nothing leaks out to the code around them."""
    import asyncio

    from tasks_app.logs import current_task_id

    seen: dict[str, str] = {}

    async def run(task_id: str) -> None:
        current_task_id.set(task_id)
        await asyncio.sleep(0)  # interleave with the other task
        record = logging.makeLogRecord({"msg": "inside"})
        TaskIdFilter().filter(record)
        seen[task_id] = record.task_id  # type: ignore[attr-defined]

    await asyncio.gather(asyncio.create_task(run("t-a")), asyncio.create_task(run("t-b")))
    assert seen == {"t-a": "t-a", "t-b": "t-b"}
    outside = logging.makeLogRecord({"msg": "outside"})
    TaskIdFilter().filter(outside)
    assert outside.task_id == "-"  # type: ignore[attr-defined]


# --- across processes ----------------------------------------------------------------------------------


def test_metrics_count_what_a_worker_process_finished(tmp_path: Path) -> None:
    """Tasks submitted to daphne and run by a separate worker process show in daphne's /metrics;
    with CLAWSITE_LOG_FORMAT=json the processes log one JSON object per line."""
    stack = Stack(tmp_path / "stack", extra_env={"CLAWSITE_LOG_FORMAT": "json"})
    try:
        stack.migrate()
        token = stack.token("dora")
        stack.start_web()
        stack.start_worker()
        status, body = stack.request(
            "POST",
            "/api/v1/tasks/batch",
            token,
            {"tasks": [{"tool": "list_directory", "args": {}}] * 4},
        )
        assert status == 202, body
        ids = [t["id"] for t in body["tasks"]]

        def all_done() -> bool:
            _, found = stack.request("POST", "/api/v1/tasks/lookup", token, {"ids": ids})
            return all(t["status"] == TaskStatus.SUCCEEDED for t in found["tasks"])

        wait_for(all_done, timeout=60, message="the worker to run the batch")

        def scraped() -> Any:
            import urllib.request

            text = urllib.request.urlopen(stack.url + "/metrics", timeout=10).read().decode()
            samples = scrape(text)
            done = samples.get(
                (
                    "clawsite_tasks_finished_total",
                    (("status", "succeeded"), ("tool", "list_directory")),
                )
            )
            return samples if done == 4 else None

        samples = wait_for(scraped, timeout=30, message="the finished counter")
        assert samples[("clawsite_tasks_submitted_total", (("tool", "list_directory"),))] == 4
        assert samples[("clawsite_task_duration_seconds_count", (("tool", "list_directory"),))] == 4
        assert samples[("clawsite_workers", ())] == 1
        worker_log = (stack.logs / "worker-0.log").read_text().splitlines()
        entries = [json.loads(line) for line in worker_log if line.startswith("{")]
        started = [
            e for e in entries if e["logger"] == "tasks_app.worker" and "started" in e["message"]
        ]
        assert started and started[0]["task_id"] == "-" and started[0]["level"] == "INFO"
    except BaseException:
        print(stack.log_text())
        raise
    finally:
        stack.stop()
