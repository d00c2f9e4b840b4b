"""API v1 task endpoints, with two personas: ownership, validation, batches, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from tasks_app.models import Task, TaskStatus
from tests.conftest import bearer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


async def post(client: AsyncClient, path: str, body: Any) -> Any:
    return await client.post(
        path,
        data=json.dumps(body) if not isinstance(body, (str, bytes)) else body,
        content_type="application/json",
    )


async def test_submit_creates_one_queued_row(as_alice: AsyncClient, alice: Any) -> None:
    response = await post(
        as_alice,
        "/api/v1/tasks",
        {"tool": "read_file", "args": {"path": "notes.txt"}, "priority": 5},
    )
    assert response.status_code == 202
    body = response.json()
    task = await Task.objects.aget(pk=body["id"])
    assert task.owner_id == alice.id and task.status == TaskStatus.QUEUED and task.priority == 5
    assert (
        body["status"] == "queued"
        and body["version"] == 1
        and body["url"] == f"/api/v1/tasks/{task.id}"
    )
    assert body["created_at"].endswith("Z")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"tool": "nope", "args": {}}, "unknown_tool"),
        ({"tool": "read_file", "args": {}}, "invalid_args"),
        ({"tool": "read_file", "args": {"path": "/etc/passwd"}}, "invalid_args"),
        ({"tool": "read_file", "args": {"path": "../bob/secret"}}, "invalid_args"),
        ({"tool": "read_file", "args": {"path": "a\x00b"}}, "invalid_args"),
        ({"tool": "read_file", "args": {"path": "x", "bogus": 1}}, "invalid_args"),
        ({"tool": "read_file", "args": {"path": "x"}, "priority": 101}, "invalid_args"),
        ({"tool": "read_file", "args": {"path": "x"}, "timeout": 0}, "invalid_args"),
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_json"),
    ],
)
async def test_bad_submissions_are_400_and_create_nothing(
    as_alice: AsyncClient, body: Any, code: str
) -> None:
    response = await post(as_alice, "/api/v1/tasks", body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert set(response.json()["error"]) == {"code", "message", "details"}
    assert await Task.objects.acount() == 0


async def test_unauthenticated_and_bad_token_are_401() -> None:
    for client in (AsyncClient(), AsyncClient(AUTHORIZATION="Bearer wrong")):
        response = await client.get("/api/v1/tasks")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthenticated"


async def test_revoked_token_is_refused(alice: Any, as_alice: AsyncClient) -> None:
    token = await alice.api_tokens.afirst()
    await sync_to_async(token.revoke)()
    assert (await as_alice.get("/api/v1/tasks")).status_code == 401


async def test_another_users_task_is_404_everywhere(
    as_alice: AsyncClient, as_bob: AsyncClient, as_carol: AsyncClient
) -> None:
    task_id = (
        await post(as_alice, "/api/v1/tasks", {"tool": "read_file", "args": {"path": "a"}})
    ).json()["id"]
    for method, path in [
        ("get", f"/api/v1/tasks/{task_id}"),
        ("post", f"/api/v1/tasks/{task_id}/cancel"),
        ("post", f"/api/v1/tasks/{task_id}/retry"),
    ]:
        response = await getattr(as_bob, method)(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"
    lookup = await post(as_bob, "/api/v1/tasks/lookup", {"ids": [task_id]})
    assert lookup.json() == {"tasks": []}
    assert (await as_bob.get("/api/v1/tasks")).json()["tasks"] == []
    # Staff see everything.
    assert (await as_carol.get(f"/api/v1/tasks/{task_id}")).status_code == 200
    assert (await Task.objects.aget(pk=task_id)).status == TaskStatus.QUEUED


async def test_batch_is_all_or_nothing(as_alice: AsyncClient) -> None:
    good = {"tool": "read_file", "args": {"path": "a"}}
    response = await post(
        as_alice,
        "/api/v1/tasks/batch",
        {"tasks": [good, {"tool": "read_file", "args": {"path": "/abs"}}, good, {"tool": "x"}]},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_batch"
    assert [d["index"] for d in error["details"]] == [1, 3]
    assert error["details"][1]["error"]["code"] == "unknown_tool"
    assert await Task.objects.acount() == 0

    response = await post(
        as_alice,
        "/api/v1/tasks/batch",
        {"tasks": [{**good, "priority": i % 201 - 100} for i in range(1000)]},
    )
    assert response.status_code == 202
    tasks = response.json()["tasks"]
    assert [t["priority"] for t in tasks] == [i % 201 - 100 for i in range(1000)]
    assert await Task.objects.acount() == 1000


@pytest.mark.parametrize("tasks", [[], [{"tool": "read_file", "args": {"path": "a"}}] * 1001])
async def test_batch_size_limits(as_alice: AsyncClient, tasks: list[Any]) -> None:
    response = await post(as_alice, "/api/v1/tasks/batch", {"tasks": tasks})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_batch"
    assert await Task.objects.acount() == 0


async def test_body_over_the_limit_is_413(as_alice: AsyncClient, settings: Any) -> None:
    settings.CLAWSITE_MAX_BODY_BYTES = 1000
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = await post(
        as_alice,
        "/api/v1/tasks",
        {"tool": "write_file", "args": {"path": "a", "content": "x" * 5000}},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert await Task.objects.acount() == 0


async def test_404_and_405_under_api_are_json(as_alice: AsyncClient) -> None:
    response = await as_alice.get("/api/v1/nowhere")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    response = await as_alice.delete("/api/v1/tasks")
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"
    response = await as_alice.get("/api/v1/tasks/batch")
    assert response.status_code == 405


async def test_list_filters_and_cursor_pagination(
    as_alice: AsyncClient, as_bob: AsyncClient
) -> None:
    await post(as_bob, "/api/v1/tasks", {"tool": "read_file", "args": {"path": "b"}})
    ids = [
        (
            await post(as_alice, "/api/v1/tasks", {"tool": "read_file", "args": {"path": str(i)}})
        ).json()["id"]
        for i in range(7)
    ]
    await post(as_alice, "/api/v1/tasks", {"tool": "list_directory", "args": {}})
    seen, path = [], "/api/v1/tasks?tool=read_file&limit=3"
    while path:
        body = (await as_alice.get(path)).json()
        seen += [t["id"] for t in body["tasks"]]
        path = body["next"]
    assert seen == list(reversed(ids))
    response = await as_alice.get("/api/v1/tasks?limit=501")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_args"
    assert (await as_alice.get("/api/v1/tasks?status=bogus")).status_code == 400
    assert (await as_alice.get("/api/v1/tasks?cursor=%%%")).status_code == 400


async def test_lookup_keeps_order_and_skips_unknown(as_alice: AsyncClient) -> None:
    ids = [
        (
            await post(as_alice, "/api/v1/tasks", {"tool": "read_file", "args": {"path": str(i)}})
        ).json()["id"]
        for i in range(3)
    ]
    body = (
        await post(as_alice, "/api/v1/tasks/lookup", {"ids": [ids[2], "missing", ids[0]]})
    ).json()
    assert [t["id"] for t in body["tasks"]] == [ids[2], ids[0]]
    assert (await post(as_alice, "/api/v1/tasks/lookup", {"ids": []})).status_code == 400


async def test_idempotency_key(as_alice: AsyncClient, as_bob: AsyncClient) -> None:
    body = {"tool": "read_file", "args": {"path": "a"}, "idempotency_key": "k1"}
    first = await post(as_alice, "/api/v1/tasks", body)
    again = await post(as_alice, "/api/v1/tasks", body)
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    conflict = await post(as_alice, "/api/v1/tasks", {**body, "args": {"path": "b"}})
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "conflict"
    other = await post(as_bob, "/api/v1/tasks", body)  # keys are per user
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]
    assert await Task.objects.acount() == 2


async def test_cancel_queued_then_retry(as_alice: AsyncClient) -> None:
    task_id = (
        await post(as_alice, "/api/v1/tasks", {"tool": "read_file", "args": {"path": "a"}})
    ).json()["id"]
    response = await as_alice.post(f"/api/v1/tasks/{task_id}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert (await Task.objects.aget(pk=task_id)).status == TaskStatus.CANCELLED
    assert (await as_alice.post(f"/api/v1/tasks/{task_id}/cancel")).status_code == 409
    response = await as_alice.post(f"/api/v1/tasks/{task_id}/retry")
    assert response.status_code == 202 and response.json()["status"] == "queued"
    assert (await as_alice.post(f"/api/v1/tasks/{task_id}/retry")).status_code == 409


async def test_tools_and_openapi(as_alice: AsyncClient) -> None:
    tools = {t["name"]: t for t in (await as_alice.get("/api/v1/tools")).json()["tools"]}
    assert {"read_file", "write_file", "list_directory", "create_directory"} <= set(tools)
    assert tools["read_file"]["read_only"] and tools["list_directory"]["cacheable"]
    assert tools["read_file"]["args_schema"]["required"] == ["path"]
    document = (await AsyncClient().get("/api/v1/openapi.json")).json()
    assert document["openapi"].startswith("3.") and "/tasks/batch" in document["paths"]


async def test_session_user_needs_csrf_but_bearer_does_not(alice: Any) -> None:
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(alice)
    body = json.dumps({"tool": "read_file", "args": {"path": "a"}})
    response = await client.post("/api/v1/tasks", data=body, content_type="application/json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    assert await Task.objects.acount() == 0
    assert (await client.get("/api/v1/tasks")).status_code == 200
    as_agent = bearer(alice, enforce_csrf_checks=True)
    assert (
        await as_agent.post("/api/v1/tasks", data=body, content_type="application/json")
    ).status_code == 202
