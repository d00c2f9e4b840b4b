"""End to end: real daphne and a real ``runworker`` process, real Redis, a file SQLite database."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import websockets

from tests.stack import Stack, wait_for


async def frames_until_done(ws: Any, seen: dict[str, list[str]], ids: list[str]) -> None:
    """Record each task's statuses, as the websocket delivers them, until all of ``ids`` ended."""
    deadline = time.monotonic() + 30
    while not all(seen.get(i, ["?"])[-1] in ("succeeded", "failed") for i in ids):
        message = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        for task in message["tasks"] if message["type"] == "task.updates" else [message["task"]]:
            seen.setdefault(task["id"], []).append(task["status"])


def test_submit_over_http_watch_over_websocket_read_the_result(stack: Stack) -> None:
    token = stack.token("alice")
    stack.start_web()
    stack.start_worker()
    ws_url = stack.url.replace("http", "ws") + "/ws/tasks/"

    def submit(tool: str, **args: Any) -> str:
        status, task = stack.request("POST", "/api/v1/tasks", token, {"tool": tool, "args": args})
        assert status == 202, task
        return task["id"]

    async def scenario() -> tuple[dict[str, list[str]], list[str]]:
        seen: dict[str, list[str]] = {}
        # An agent: Bearer header on the handshake, no Origin.
        async with websockets.connect(
            ws_url, additional_headers={"Authorization": f"Bearer {token}"}
        ) as ws:
            ids = [
                await asyncio.to_thread(submit, "write_file", path="hello.txt", content="hi there")
            ]
            await frames_until_done(ws, seen, ids)
            ids.append(await asyncio.to_thread(submit, "read_file", path="hello.txt"))
            ids.append(await asyncio.to_thread(submit, "list_directory"))
            await frames_until_done(ws, seen, ids)
        return seen, ids

    seen, ids = asyncio.run(scenario())
    # Brief states may be merged away (API.md); the terminal one always arrives.
    for task_id in ids:
        assert seen[task_id][-1] == "succeeded", seen
    read, listing = stack.wait_finished(token, ids[1:3])
    assert read["result"]["content"] == "hi there" and read["status"] == "succeeded"
    assert [e["name"] for e in listing["result"]["entries"]] == ["hello.txt"]
    assert (stack.data_dir / "workspaces" / "alice" / "hello.txt").read_text() == "hi there"


def test_a_task_submitted_while_no_worker_runs_once_one_starts(stack: Stack) -> None:
    token = stack.token("bob")
    stack.start_web()
    status, task = stack.request(
        "POST", "/api/v1/tasks", token, {"tool": "create_directory", "args": {"path": "later"}}
    )
    assert status == 202
    time.sleep(1)
    assert stack.request("GET", f"/api/v1/tasks/{task['id']}", token)[1]["status"] == "queued"
    stack.start_worker()
    done = wait_for(
        lambda: (
            (t := stack.request("GET", f"/api/v1/tasks/{task['id']}", token)[1])["status"]
            == "succeeded"
            and t
        ),
        timeout=60,
    )
    assert done["result"] == {"path": "later", "created": True}
    assert (stack.data_dir / "workspaces" / "bob" / "later").is_dir()


def test_a_browser_session_can_use_the_api_with_its_csrf_token(stack: Stack) -> None:
    """Through the real ASGI routing (the API's lean handler opens the session itself)."""
    import http.cookiejar
    import re
    import urllib.parse
    import urllib.request

    stack.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; User.objects.create_user('erin', password='erin-pass-1')",
    )
    stack.start_web()
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(stack.url + "/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode(
        {"username": "erin", "password": "erin-pass-1", "csrfmiddlewaretoken": token}
    ).encode()
    opener.open(
        urllib.request.Request(
            stack.url + "/login/", data=form, headers={"Referer": stack.url + "/login/"}
        )
    )
    csrf = next(c.value for c in jar if c.name == "csrftoken")
    body = json.dumps({"tool": "create_directory", "args": {"path": "s"}}).encode()

    def post(headers: dict[str, str]) -> tuple[int, Any]:
        request = urllib.request.Request(
            stack.url + "/api/v1/tasks",
            data=body,
            headers={"Content-Type": "application/json", **headers},
        )
        try:
            with opener.open(request) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    status, answer = post({})
    assert status == 403 and answer["error"]["code"] == "forbidden"
    status, answer = post({"X-CSRFToken": str(csrf)})
    assert status == 202 and answer["status"] == "queued"
    status, listing = stack.request("GET", "/api/v1/tasks", stack.token("erin"))
    assert [t["id"] for t in listing["tasks"]] == [answer["id"]]
