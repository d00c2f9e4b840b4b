"""The lean /api/ handler validates the Host and sends the security headers on every answer,
errors included, like the pages' middleware stack does."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator

from clawsite.asgi import application

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


async def call(path: str, host: str, user: Any = None) -> tuple[int, dict[str, str], Any]:
    headers = [(b"host", host.encode())]
    if user is not None:
        headers.append((b"authorization", f"Bearer {user.raw_token}".encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    app = ApplicationCommunicator(application, scope)
    await app.send_input({"type": "http.request", "body": b""})
    start = await app.receive_output(10)
    body = b""
    while True:
        part = await app.receive_output(10)
        body += part.get("body", b"")
        if not part.get("more_body"):
            break
    answer = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start["status"], answer, json.loads(body) if body else None


@pytest.mark.parametrize("path", ["/api/v1/tools", "/api/v1/tasks", "/api/v1/nowhere"])
async def test_every_api_answer_has_the_security_headers(alice: Any, path: str) -> None:
    status, headers, _ = await call(path, "localhost", alice)
    assert status in (200, 404)
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "same-origin"


async def test_a_host_not_allowed_is_refused_before_anything_runs(alice: Any) -> None:
    status, headers, body = await call("/api/v1/tasks", "evil.com", alice)
    assert status == 400 and body["error"]["code"] == "invalid_args"
    assert "Host" in body["error"]["message"]
    assert headers["x-content-type-options"] == "nosniff"
    status, _, body = await call("/api/v1/tasks", "localhost", alice)
    assert status == 200 and body["tasks"] == []
