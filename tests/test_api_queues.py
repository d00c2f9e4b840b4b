"""The task object's ``queue`` and ``source`` in the API and the pages."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import AsyncClient, Client

from tasks_app.models import Queue, Task, TaskSource

from .test_api_tasks import post

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

READ = {"tool": "read_file", "args": {"path": "a.txt"}}


async def test_submit_takes_a_queue_and_says_where_the_task_came_from(
    as_alice: AsyncClient,
) -> None:
    plain = (await post(as_alice, "/api/v1/tasks", READ)).json()
    named = (await post(as_alice, "/api/v1/tasks", {**READ, "queue": "long-jobs_2"})).json()
    assert (plain["queue"], plain["source"]) == ("default", "api")
    assert (named["queue"], named["source"]) == ("long-jobs_2", "api")
    row = await Task.objects.aget(pk=named["id"])
    assert (row.queue, row.source) == ("long-jobs_2", TaskSource.API)


async def test_batch_items_take_a_queue(as_alice: AsyncClient) -> None:
    body = {"tasks": [{**READ, "queue": "a"}, READ]}
    response = await post(as_alice, "/api/v1/tasks/batch", body)
    assert response.status_code == 202
    assert [t["queue"] for t in response.json()["tasks"]] == ["a", "default"]
    assert sorted([t.queue async for t in Task.objects.all()]) == ["a", "default"]


@pytest.mark.parametrize("queue", ["", "a b", "../x", "a.b", "x" * 65, 7, None, "é"])
async def test_a_bad_queue_name_is_400_and_creates_nothing(
    as_alice: AsyncClient, queue: Any
) -> None:
    response = await post(as_alice, "/api/v1/tasks", {**READ, "queue": queue})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_args"
    response = await post(
        as_alice, "/api/v1/tasks/batch", {"tasks": [READ, {**READ, "queue": queue}]}
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["index"] == 1
    assert await Task.objects.acount() == 0


async def test_clawsite_queues_limits_the_names(as_alice: AsyncClient, settings: Any) -> None:
    settings.CLAWSITE_QUEUES = ["default", "long"]
    assert (await post(as_alice, "/api/v1/tasks", {**READ, "queue": "long"})).status_code == 202
    response = await post(as_alice, "/api/v1/tasks", {**READ, "queue": "other"})
    assert response.status_code == 400 and "other" in response.json()["error"]["message"]
    assert [t.queue async for t in Task.objects.all()] == ["long"]


async def test_the_list_filters_by_queue_and_source(
    as_alice: AsyncClient, alice: Any, bob: Any
) -> None:
    await post(as_alice, "/api/v1/tasks", {**READ, "queue": "a"})
    await post(as_alice, "/api/v1/tasks", READ)
    await Task.objects.acreate(owner=alice, tool="read_file", queue="a", source=TaskSource.PAGE)
    await Task.objects.acreate(owner=bob, tool="read_file", queue="a")  # not alice's
    by_queue = (await as_alice.get("/api/v1/tasks?queue=a")).json()["tasks"]
    assert sorted(t["source"] for t in by_queue) == ["api", "page"]
    by_source = (await as_alice.get("/api/v1/tasks?source=page")).json()["tasks"]
    assert [(t["queue"], t["source"]) for t in by_source] == [("a", "page")]
    both = (await as_alice.get("/api/v1/tasks?queue=default&source=api")).json()["tasks"]
    assert [t["queue"] for t in both] == ["default"]
    for bad in ("queue=a%20b", "source=nowhere"):
        response = await as_alice.get(f"/api/v1/tasks?{bad}")
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_args"


async def test_an_idempotent_repeat_in_another_queue_is_a_conflict(as_alice: AsyncClient) -> None:
    first = await post(as_alice, "/api/v1/tasks", {**READ, "idempotency_key": "k"})
    again = await post(as_alice, "/api/v1/tasks", {**READ, "idempotency_key": "k"})
    other = await post(as_alice, "/api/v1/tasks", {**READ, "idempotency_key": "k", "queue": "b"})
    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 409)


def test_pages_submit_tasks_with_source_page(alice: Any) -> None:
    client = Client()
    client.force_login(alice)
    client.post("/tasks/new", {"tool": "list_directory", "priority": "0", "max_attempts": "1"})
    client.post("/tasks/batch", {"lines": '{"tool": "list_directory", "args": {}}'})
    assert [t.source for t in Task.objects.all()] == [TaskSource.PAGE, TaskSource.PAGE]


async def test_staff_pause_and_resume_queues_others_are_forbidden(
    as_alice: AsyncClient, as_carol: AsyncClient, alice: Any
) -> None:
    await post(as_alice, "/api/v1/tasks", {**READ, "queue": "a"})
    await Task.objects.acreate(owner=alice, tool="read_file", queue="done", status="succeeded")
    for method, path in [
        ("get", "/api/v1/queues"),
        ("post", "/api/v1/queues/a/pause"),
        ("post", "/api/v1/queues/a/resume"),
    ]:
        response = await getattr(as_alice, method)(path)
        assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    assert not await Queue.objects.aexists()
    listed = (await as_carol.get("/api/v1/queues")).json()["queues"]
    assert listed == [
        {"name": "a", "paused": False, "queued": 1, "running": 0},
        {"name": "done", "paused": False, "queued": 0, "running": 0},
    ]
    paused = await as_carol.post("/api/v1/queues/a/pause")
    assert paused.status_code == 200
    assert paused.json() == {"name": "a", "paused": True, "queued": 1, "running": 0}
    assert (await Queue.objects.aget(name="a")).paused
    # A paused queue with no task is listed too; it still accepts tasks.
    await as_carol.post("/api/v1/queues/empty/pause")
    assert (await post(as_alice, "/api/v1/tasks", {**READ, "queue": "a"})).status_code == 202
    listed = (await as_carol.get("/api/v1/queues")).json()["queues"]
    assert [(q["name"], q["paused"], q["queued"]) for q in listed] == [
        ("a", True, 2),
        ("done", False, 0),
        ("empty", True, 0),
    ]
    resumed = await as_carol.post("/api/v1/queues/a/resume")
    assert resumed.json()["paused"] is False and not (await Queue.objects.aget(name="a")).paused
    assert (await as_carol.get("/api/v1/queues/a/pause")).status_code == 405


async def test_a_bad_queue_name_in_the_path_is_400(as_carol: AsyncClient) -> None:
    for name in ("a.b", "x" * 65, "%20"):
        response = await as_carol.post(f"/api/v1/queues/{name}/pause")
        assert response.status_code in (400, 404), name
        assert response.json()["error"]["code"] in ("invalid_args", "not_found")
    assert not await Queue.objects.aexists()
