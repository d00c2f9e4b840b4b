"""Websocket security: the Origin of cookie handshakes compared whole, and open sockets closed
when their access ends (logout, token revoked, staff rights lost)."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import AsyncClient

from tasks_app.models import ApiToken
from tasks_app.ws_access import CLOSE_CODE

from .test_websockets import communicator

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


async def session_cookie(user: Any) -> tuple[AsyncClient, str]:
    client = AsyncClient()
    await client.aforce_login(user)
    return (
        client,
        f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}",
    )


async def opens(ws: WebsocketCommunicator) -> bool:
    connected, _ = await ws.connect()
    if connected:
        await ws.disconnect()
    return connected


async def test_cookie_origin_is_compared_with_scheme_host_and_port(
    alice: Any, settings: Any
) -> None:
    _, cookie = await session_cookie(alice)
    path = "/ws/tasks/"
    assert await opens(communicator(path, cookie=cookie, origin="http://localhost"))
    assert await opens(
        communicator(path, cookie=cookie, origin="http://localhost:8000", host="localhost:8000")
    )
    for origin in ("http://localhost:9999", "https://localhost", "http://evil.example", "null"):
        assert not await opens(communicator(path, cookie=cookie, origin=origin)), origin
    # A Host that is not allowed does not make its own origin trusted.
    assert not await opens(
        communicator(path, cookie=cookie, origin="http://evil.example", host="evil.example")
    )
    # A wildcard ALLOWED_HOSTS never lets another site's page in.
    settings.ALLOWED_HOSTS = ["*"]
    assert not await opens(communicator(path, cookie=cookie, origin="http://evil.example"))
    assert not await opens(communicator(path, cookie=cookie, origin="http://localhost:9999"))
    # A TLS-terminating proxy's public origin is trusted by name, whole.
    settings.CSRF_TRUSTED_ORIGINS = ["https://claw.example"]
    assert await opens(communicator(path, cookie=cookie, origin="https://claw.example"))
    assert not await opens(communicator(path, cookie=cookie, origin="https://claw.example:444"))


async def closed_for_access(ws: WebsocketCommunicator) -> bool:
    """Frames may arrive first; then the close, with the "access ended" code."""
    while True:
        output = await ws.receive_output(timeout=20)
        if output["type"] == "websocket.close":
            return output.get("code") == CLOSE_CODE


async def test_logout_closes_the_sessions_sockets(alice: Any) -> None:
    client, cookie = await session_cookie(alice)
    ws = communicator("/ws/tasks/", cookie=cookie, origin="http://localhost")
    assert (await ws.connect())[0]
    bearer = communicator("/ws/tasks/", alice)  # another credential of alice: stays open
    assert (await bearer.connect())[0]
    await client.alogout()
    assert await closed_for_access(ws)
    assert await bearer.receive_nothing(timeout=1)
    await bearer.disconnect()


async def test_token_revocation_closes_its_sockets(alice: Any) -> None:
    ws = communicator("/ws/tasks/", alice)
    assert (await ws.connect())[0]
    token = await ApiToken.objects.aget(user=alice)
    await sync_to_async(token.revoke)()
    assert await closed_for_access(ws)


async def test_loss_of_staff_rights_closes_staff_sockets(carol: Any) -> None:
    stats = communicator("/ws/stats/", carol)
    tasks = communicator("/ws/tasks/", carol)
    assert (await stats.connect())[0] and (await tasks.connect())[0]
    carol.is_staff = False
    await carol.asave()
    assert await closed_for_access(stats)
    assert await closed_for_access(tasks)


async def test_a_lost_hint_is_caught_by_the_periodic_check(alice: Any, settings: Any) -> None:
    settings.CLAWSITE_WS_RECHECK_SECONDS = 0.2
    ws = communicator("/ws/tasks/", alice)
    assert (await ws.connect())[0]
    # A revocation that sends no signal (a bulk update): only the periodic check can see it.
    await ApiToken.objects.filter(user=alice).aupdate(revoked_at="2026-01-01T00:00:00Z")
    assert await closed_for_access(ws)
