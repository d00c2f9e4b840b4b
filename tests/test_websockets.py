"""/ws/tasks/ and /ws/tasks/<id>/: authenticated, ownership-filtered, after-commit updates."""

from __future__ import annotations

import json
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import AsyncClient

from clawsite.asgi import application
from tasks_app.models import Task

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def communicator(
    path: str,
    user: Any = None,
    origin: str | None = None,
    cookie: str | None = None,
    host: str = "localhost",
) -> WebsocketCommunicator:
    headers = []
    if user is not None:
        headers.append((b"authorization", f"Bearer {user.raw_token}".encode()))
    if origin:
        # A browser's handshake names its Origin and the Host it connects to.
        headers += [(b"origin", origin.encode()), (b"host", host.encode())]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, path, headers=headers)


async def submit(client: AsyncClient, path: str = "a") -> dict[str, Any]:
    response = await client.post(
        "/api/v1/tasks",
        data=json.dumps({"tool": "read_file", "args": {"path": path}}),
        content_type="application/json",
    )
    return response.json()


async def frames_for(ws: WebsocketCommunicator, timeout: float = 5) -> list[dict[str, Any]]:
    """Every task state in the frames that arrive within ``timeout`` of quiet."""
    tasks: list[dict[str, Any]] = []
    # receive_nothing, unlike a receive that times out, leaves the application running.
    while not await ws.receive_nothing(timeout=timeout, interval=0.01):
        message = await ws.receive_json_from()
        tasks += message["tasks"] if message["type"] == "task.updates" else [message["task"]]
    return tasks


async def test_refused_without_credentials_or_with_a_bad_token(alice: Any) -> None:
    for ws in (communicator("/ws/tasks/"), communicator("/ws/tasks/", origin="http://localhost")):
        connected, _ = await ws.connect()
        assert not connected
    alice.raw_token = "bad"
    connected, _ = await communicator("/ws/tasks/", alice).connect()
    assert not connected


async def test_users_receive_only_their_own_tasks_and_staff_all(
    alice: Any, bob: Any, carol: Any, as_alice: AsyncClient, as_bob: AsyncClient
) -> None:
    sockets = {user.username: communicator("/ws/tasks/", user) for user in (alice, bob, carol)}
    for ws in sockets.values():
        connected, _ = await ws.connect()
        assert connected
    mine = await submit(as_alice)
    theirs = await submit(as_bob)
    seen = {
        name: {t["id"] for t in await frames_for(ws, timeout=1)} for name, ws in sockets.items()
    }
    assert seen["alice"] == {mine["id"]}
    assert seen["bob"] == {theirs["id"]}
    assert seen["carol"] == {mine["id"], theirs["id"]}
    for ws in sockets.values():
        await ws.disconnect()


async def test_one_task_socket_sends_current_state_then_changes(
    alice: Any, bob: Any, as_alice: AsyncClient
) -> None:
    task = await submit(as_alice)
    other = await submit(as_alice, "b")
    ws = communicator(f"/ws/tasks/{task['id']}/", alice)
    assert (await ws.connect())[0]
    first = await ws.receive_json_from(timeout=5)
    assert first == {"type": "task.update", "task": {**task}}
    await as_alice.post(f"/api/v1/tasks/{task['id']}/cancel")
    await as_alice.post(f"/api/v1/tasks/{other['id']}/cancel")
    updates = await frames_for(ws, timeout=1)
    assert [u["status"] for u in updates] == ["cancelled"] and updates[0]["version"] == 2
    await ws.disconnect()
    # Another user's task: refused at the handshake, its existence not revealed.
    connected, _ = await communicator(f"/ws/tasks/{task['id']}/", bob).connect()
    assert not connected


async def test_cookie_handshake_needs_an_allowed_origin(alice: Any, as_alice: AsyncClient) -> None:
    client = AsyncClient()
    await client.aforce_login(alice)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    connected, _ = await communicator(
        "/ws/tasks/", cookie=cookie, origin="http://evil.example"
    ).connect()
    assert not connected
    connected, _ = await communicator("/ws/tasks/", cookie=cookie).connect()
    assert not connected
    ws = communicator("/ws/tasks/", cookie=cookie, origin="http://localhost")
    assert (await ws.connect())[0]
    task = await submit(as_alice)
    assert [t["id"] for t in await frames_for(ws, timeout=1)] == [task["id"]]
    await ws.disconnect()


async def test_versions_never_go_back(alice: Any, as_alice: AsyncClient) -> None:
    from tasks_app.events import send_updates

    ws = communicator("/ws/tasks/", alice)
    assert (await ws.connect())[0]
    task = await submit(as_alice)
    assert [t["version"] for t in await frames_for(ws, timeout=1)] == [1]
    row = await Task.objects.aget(pk=task["id"])
    newer = {**task, "version": 5, "status": "running", "owner": row.owner_id}
    older = {**task, "version": 4, "status": "queued", "owner": row.owner_id}
    await send_updates([newer])
    await send_updates([older])
    await send_updates([newer])
    assert [t["version"] for t in await frames_for(ws, timeout=1)] == [5]
    await ws.disconnect()
