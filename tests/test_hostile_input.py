"""The issue's reproductions (hostile input): each one a 4xx for its sender alone, never a 500,
never a cost to another user. On the code before, each of these answered 500, crashed a
socket, or failed other users' requests."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient, Client

from clawsite.asgi import application
from tasks_app import services
from tasks_app.errors import ApiError
from tasks_app.models import Task
from tasks_app.safejson import MAX_JSON_DEPTH
from tasks_app.schemas import TaskSubmission
from tools_app.registry import get_tool

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

OVERFLOW = "9999-12-31T23:59:59-23:59"  # past datetime.max once in UTC
DEEP = "[" * 100_000 + "]" * 100_000  # RecursionError in json.loads
JUST_TOO_DEEP = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)


async def post(client: AsyncClient, path: str, body: Any) -> Any:
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return await client.post(path, data=data, content_type="application/json")


def error_code(response: Any) -> str:
    return str(response.json()["error"]["code"])


async def task_count() -> int:
    return await sync_to_async(Task.objects.count)()


# --- the group commit: one bad request fails alone -------------------------------------------------


def _unchecked(user: Any, **fields: Any) -> Any:
    """A submission that skipped validation: what a gap in the checks would let through."""
    defaults: dict[str, Any] = {
        "tool": "list_directory",
        "args": {},
        "priority": 0,
        "timeout": None,
        "max_attempts": 3,
        "run_after": None,
        "idempotency_key": None,
    }
    submission = TaskSubmission.model_construct(**{**defaults, **fields})
    return submission, get_tool("list_directory")


def test_a_value_that_breaks_the_shared_statement_fails_its_request_only(
    alice: Any, bob: Any
) -> None:
    overflowing = datetime(
        9999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(hours=23, minutes=59))
    )
    good = services.validate_submission({"tool": "list_directory", "args": {}}, bob)
    results = services.submit_grouped(
        [
            (bob, [good]),
            (alice, [_unchecked(alice, run_after=overflowing)]),
            (bob, [good, good]),
        ]
    )
    assert isinstance(results[1], ApiError) and results[1].code == "invalid_args"
    assert [len(r) for r in (results[0], results[2])] == [1, 2]  # type: ignore[arg-type]
    assert Task.objects.filter(owner=bob).count() == 3
    assert not Task.objects.filter(owner=alice).exists()


async def test_two_users_at_once_the_bad_one_fails_the_other_all_succeed(
    as_alice: AsyncClient, as_bob: AsyncClient
) -> None:
    """The issue measured 73 of bob's 180 submits failing while alice sent these."""
    bad_bodies = [
        {"tool": "list_directory", "args": {}, "run_after": OVERFLOW},
        {"tool": "list_directory", "args": {"path": "a\u0000b"}},
        {"tool": "list_directory", "args": {"path": "\ud800"}},
        {"tool": "list_directory", "args": {"x\u0000": 1}},
        {"tool": "list_directory", "args": {}, "idempotency_key": "k\u0000"},
        {"tool": "list_directory", "args": {}, "run_after": "0001-01-01T00:00:00+23:59"},
    ]
    good = {"tool": "list_directory", "args": {}}
    calls = []
    for round_ in range(10):
        for body in bad_bodies:
            calls.append(("bad", post(as_alice, "/api/v1/tasks", body)))
            calls.append(("good", post(as_bob, "/api/v1/tasks", {**good, "priority": round_})))
    responses = await asyncio.gather(*(call for _, call in calls))
    for (who, _), response in zip(calls, responses, strict=True):
        if who == "bad":
            assert response.status_code == 400, response.content
            assert error_code(response) == "invalid_args"
        else:
            assert response.status_code == 202, response.content
    assert await task_count() == len(calls) // 2


# --- no 500 on any input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/tasks", DEEP),
        ("/api/v1/tasks", JUST_TOO_DEEP),
        ("/api/v1/tasks", '{"tool": "list_directory", "args": {"a": ' + JUST_TOO_DEEP + "}}"),
        ("/api/v1/tasks", '{"tool": "list_directory", "args": {"a": NaN}}'),
        ("/api/v1/tasks/batch", DEEP),
        ("/api/v1/tasks/batch", '{"tasks": [' + JUST_TOO_DEEP + "]}"),
        ("/api/v1/tasks/lookup", DEEP),
        ("/api/v1/tasks/lookup", '{"ids": ' + JUST_TOO_DEEP + "}"),
    ],
)
async def test_deep_or_non_standard_json_is_invalid_json(
    as_alice: AsyncClient, path: str, body: str
) -> None:
    response = await post(as_alice, path, body)
    assert response.status_code == 400 and error_code(response) == "invalid_json"
    assert await task_count() == 0


async def test_lone_surrogates_and_nul_are_invalid_args(as_alice: AsyncClient) -> None:
    for path, body in [
        ("/api/v1/tasks/lookup", {"ids": ["\udc80"]}),
        ("/api/v1/tasks", '{"tool": "list_directory", "args": {"a": 1e999}}'),  # inf
        ("/api/v1/tasks/lookup", {"ids": ["a\u0000"]}),
        ("/api/v1/tasks", {"tool": "read_file", "args": {"path": "\udc80"}}),
        ("/api/v1/tasks/batch", {"tasks": [{"tool": "read_file", "args": {"path": "\ud800x"}}]}),
    ]:
        response = await post(as_alice, path, body)
        assert response.status_code == 400, (path, response.content)
        assert error_code(response) in ("invalid_args", "invalid_batch")
    assert await task_count() == 0


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8", "surrogatepass")).decode()


async def test_bad_cursors_and_ids_are_4xx(as_alice: AsyncClient) -> None:
    for cursor in [
        _cursor(f"{OVERFLOW}|x"),
        _cursor("2026-01-01T00:00:00+00:00|a\u0000"),
        _cursor("2026-01-01T00:00:00|x"),  # naive
        _cursor("2026-01-01T00:00:00+00:00|\udc80"),
        "%%%",
    ]:
        response = await as_alice.get("/api/v1/tasks", {"cursor": cursor})
        assert response.status_code == 400, (cursor, response.content)
        assert error_code(response) == "invalid_args"
    response = await as_alice.get("/api/v1/tasks", {"tool": "a\u0000"})
    assert response.status_code == 400
    for path in ("/api/v1/tasks/a%00b", "/api/v1/tasks/%ED%A0%80", "/api/v1/tasks/a%00/cancel"):
        response = await (as_alice.post(path) if path.endswith("cancel") else as_alice.get(path))
        assert response.status_code == 404, (path, response.content)


# --- the pages -------------------------------------------------------------------------------------


@pytest.fixture
def alice_browser(alice: Any) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def test_pages_refuse_deep_json_and_surrogates_with_400(alice_browser: Client) -> None:
    base = {"priority": 0, "max_attempts": 3}
    for form in [
        {"tool": "read_file", "args_json": DEEP, **base},
        {"tool": "read_file", "args_json": '{"path": "\\ud800"}', **base},
        {"tool": "http_fetch", "arg_url": "http://example.com", "arg_headers": DEEP, **base},
    ]:
        response = alice_browser.post("/tasks/new", form)
        assert response.status_code == 400, response.content[:300]
    response = alice_browser.post("/tasks/batch", {"lines": DEEP + "\n" + JUST_TOO_DEEP})
    assert response.status_code == 400
    assert b"invalid_json" in response.content or b"nested deeper" in response.content
    assert Task.objects.count() == 0
    assert alice_browser.get("/tasks/a%00b").status_code == 404


def test_the_batch_pages_upload_is_capped_like_bodies(alice_browser: Client, settings: Any) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.CLAWSITE_MAX_BODY_BYTES = 4096
    line = json.dumps({"tool": "list_directory", "args": {}}) + "\n"
    upload = SimpleUploadedFile("tasks.jsonl", (line * 200).encode())  # ~8 KB
    response = alice_browser.post("/tasks/batch", {"file": upload})
    assert response.status_code == 413
    assert Task.objects.count() == 0


# --- websockets ------------------------------------------------------------------------------------


async def test_junk_websocket_frames_get_an_error_frame_and_the_socket_stays_open(
    alice: Any, as_alice: AsyncClient
) -> None:
    ws = WebsocketCommunicator(
        application,
        "/ws/tasks/",
        headers=[(b"authorization", f"Bearer {alice.raw_token}".encode())],
    )
    connected, _ = await ws.connect()
    assert connected
    for frame in ["not json", DEEP, JUST_TOO_DEEP, "NaN"]:
        await ws.send_to(text_data=frame)
        answer = await ws.receive_json_from(timeout=5)
        assert answer["type"] == "error" and answer["error"]["code"] == "invalid_json"
    await ws.send_to(bytes_data=b"\xff\xfe")
    assert (await ws.receive_json_from(timeout=5))["type"] == "error"
    # Still open, still delivering.
    response = await post(as_alice, "/api/v1/tasks", {"tool": "list_directory", "args": {}})
    message = await ws.receive_json_from(timeout=5)
    assert message["type"] == "task.update" and message["task"]["id"] == response.json()["id"]
    await ws.disconnect()
