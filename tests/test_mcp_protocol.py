"""/mcp at the wire: authentication, Origin, the spec's errors for what is malformed or of a wrong
revision (never a 500), sessions, and the 2026-07-28 tasks extension (which no SDK client
speaks yet) in raw JSON-RPC against a live daphne and worker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.mcp_helpers import MODERN, McpStack, mcp_stack, rpc, rpc_answer
from tests.stack import wait_for

pytestmark = pytest.mark.timeout(180)
TASKS: dict[str, Any] = {"extensions": {"io.modelcontextprotocol/tasks": {}}}


@pytest.fixture(scope="module")
def mcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpStack]:
    yield from mcp_stack(tmp_path_factory)


def post(mcp: McpStack, body: Any, **headers: str) -> httpx.Response:
    sent = {"Authorization": f"Bearer {mcp.alice}", "Accept": "application/json", **headers}
    return httpx.post(mcp.stack.url + "/mcp", content=body, headers=sent, timeout=30)


@pytest.mark.parametrize("token", [None, "Basic abc", "not-a-token", "x" * 43, "revoked"])
def test_no_or_a_bad_token_is_401_with_a_bearer_challenge(mcp: McpStack, token: Any) -> None:
    if token == "revoked":
        token = mcp.stack.token("revoked")
        mcp.stack.manage(
            "shell",
            "-c",
            "from django.utils import timezone; from tasks_app.models import ApiToken; "
            "ApiToken.objects.filter(user__username='revoked').update(revoked_at=timezone.now())",
        )
    headers = {}
    if token is not None:
        headers["Authorization"] = token if token.startswith("Basic") else f"Bearer {token}"
    call = {"name": "write_file", "arguments": {"path": "unauthorized.txt", "content": "x"}}
    response = httpx.post(
        mcp.stack.url + "/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call},
        headers={"Accept": "application/json", "MCP-Protocol-Version": "2025-06-18", **headers},
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert not list(mcp.stack.data_dir.glob("workspaces/*/unauthorized.txt"))


def test_a_browser_origin_must_be_an_allowed_host(mcp: McpStack) -> None:
    rebound = rpc(mcp.stack, mcp.alice, "tools/list", headers={"Host": "evil.example"})
    assert rebound.status_code == 400 and rebound.json()["error"]["code"] == -32600
    evil = rpc(mcp.stack, mcp.alice, "tools/list", headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403
    local = rpc(mcp.stack, mcp.alice, "tools/list", headers={"Origin": mcp.stack.url})
    assert local.status_code == 200 and rpc_answer(local)["result"]["tools"]


def test_malformed_messages_get_the_json_rpc_errors(mcp: McpStack) -> None:
    cases = [
        (b"{not json", 400, -32700),
        (b"[]", 400, -32600),  # batches were removed in 2025-06-18
        (b'[{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}]', 400, -32600),
        (b'"a string"', 400, -32600),
        (b'{"jsonrpc": "1.0", "id": 1, "method": "tools/list"}', 400, -32600),
        (b'{"jsonrpc": "2.0", "id": true, "method": "tools/list"}', 400, -32600),
        (b'{"jsonrpc": "2.0", "id": 1, "method": 5}', 400, -32600),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": [1]}', 200, -32600),
        (b"\xff\xfe", 400, -32700),
        (b'{"jsonrpc": "2.0", "id": 3}', 400, -32600),
    ]
    for body, status, code in cases:
        response = post(mcp, body, **{"MCP-Protocol-Version": "2025-06-18"})
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"]["code"] == code, body


def test_unknown_methods_and_wrong_versions(mcp: McpStack) -> None:
    legacy = rpc_answer(rpc(mcp.stack, mcp.alice, "no/such", version="2025-06-18"))
    assert legacy["error"]["code"] == -32601
    modern = rpc(mcp.stack, mcp.alice, "no/such")
    assert modern.status_code == 404 and modern.json()["error"]["code"] == -32601
    old = rpc(mcp.stack, mcp.alice, "tools/list", version="1999-01-01")
    assert old.status_code == 400 and old.json()["error"]["code"] == -32022
    future = rpc(
        mcp.stack,
        mcp.alice,
        "tools/list",
        {"_meta": {"io.modelcontextprotocol/protocolVersion": "2099-01-01"}},
        headers={"MCP-Protocol-Version": "2099-01-01"},
    )
    assert future.status_code == 400
    error = future.json()["error"]
    assert error["code"] == -32022 and error["data"]["requested"] == "2099-01-01"
    assert MODERN in error["data"]["supported"] and "2025-06-18" in error["data"]["supported"]
    # The headers must say what the body says (2026-07-28).
    for header, value in [("Mcp-Method", "tools/call"), ("MCP-Protocol-Version", "2025-11-25")]:
        mismatch = rpc(mcp.stack, mcp.alice, "tools/list", headers={header: value})
        assert mismatch.status_code == 400 and mismatch.json()["error"]["code"] == -32020
    renamed = rpc(
        mcp.stack,
        mcp.alice,
        "tools/call",
        {"name": "read_file", "arguments": {"path": "x"}},
        headers={"Mcp-Name": "write_file"},
    )
    assert renamed.status_code == 400 and renamed.json()["error"]["code"] == -32020


def test_initialize_negotiates_and_mints_a_session_of_the_user(mcp: McpStack) -> None:
    params = {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    }
    response = rpc(mcp.stack, mcp.alice, "initialize", params, version=None)
    result = rpc_answer(response)["result"]
    assert result["protocolVersion"] == "2025-06-18" and "tasks" not in result["capabilities"]
    session = response.headers["mcp-session-id"]
    newest = rpc_answer(
        rpc(
            mcp.stack,
            mcp.alice,
            "initialize",
            {**params, "protocolVersion": "2031-01-01"},
            version=None,
        )
    )["result"]
    assert newest["protocolVersion"] == "2025-11-25" and "tasks" in newest["capabilities"]
    mine = rpc(
        mcp.stack, mcp.alice, "ping", version="2025-06-18", headers={"Mcp-Session-Id": session}
    )
    assert mine.status_code == 200 and rpc_answer(mine)["result"] == {}
    # Another user's session, or a forged one, is not found.
    for token, value in [(mcp.bob, session), (mcp.alice, session + "x"), (mcp.alice, "forged")]:
        other = rpc(
            mcp.stack, token, "ping", version="2025-06-18", headers={"Mcp-Session-Id": value}
        )
        assert other.status_code == 404


def test_notifications_and_responses_are_accepted_without_a_body(mcp: McpStack) -> None:
    for body in [
        b'{"jsonrpc": "2.0", "method": "notifications/initialized"}',
        b'{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99}}',
        b'{"jsonrpc": "2.0", "id": 7, "result": {}}',
    ]:
        response = post(mcp, body, **{"MCP-Protocol-Version": "2025-06-18"})
        assert response.status_code == 202 and response.content == b""


def test_get_and_delete_are_405_and_accept_is_honoured(mcp: McpStack) -> None:
    auth = {"Authorization": f"Bearer {mcp.alice}"}
    for method in ("GET", "DELETE", "PUT"):
        response = httpx.request(method, mcp.stack.url + "/mcp", headers=auth)
        assert response.status_code == 405 and response.headers["allow"] == "POST"
    refused = rpc(mcp.stack, mcp.alice, "tools/list", headers={"Accept": "text/html"})
    assert refused.status_code == 406
    only_sse = rpc(mcp.stack, mcp.alice, "tools/list", headers={"Accept": "text/event-stream"})
    assert only_sse.headers["content-type"].startswith("text/event-stream")
    assert rpc_answer(only_sse)["result"]["tools"]
    json_call = rpc(
        mcp.stack,
        mcp.alice,
        "tools/call",
        {"name": "list_directory", "arguments": {}},
        headers={"Accept": "application/json"},
    )
    assert json_call.headers["content-type"] == "application/json"
    assert json_call.json()["result"]["isError"] is False


def test_server_discover_and_modern_results(mcp: McpStack) -> None:
    result = rpc_answer(rpc(mcp.stack, mcp.alice, "server/discover"))["result"]
    assert MODERN in result["supportedVersions"] and "2025-06-18" in result["supportedVersions"]
    assert "io.modelcontextprotocol/tasks" in result["capabilities"]["extensions"]
    assert result["resultType"] == "complete" and result["cacheScope"] == "private"
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "clawsite"
    assert rpc(mcp.stack, mcp.alice, "ping").status_code == 404  # removed in 2026-07-28


def wait_task(mcp: McpStack, task_id: str, token: str | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        task = rpc_answer(rpc(mcp.stack, token or mcp.alice, "tasks/get", {"taskId": task_id}))
        if task["result"]["status"] != "working" or time.monotonic() > deadline:
            return task["result"]
        time.sleep(task["result"]["pollIntervalMs"] / 1000)


def test_the_2026_tasks_extension_maps_onto_clawsite_tasks(mcp: McpStack) -> None:
    created = rpc_answer(
        rpc(
            mcp.stack,
            mcp.alice,
            "tools/call",
            {"name": "write_file", "arguments": {"path": "ext.txt", "content": "ok"}},
            capabilities=TASKS,
        )
    )["result"]
    assert created["resultType"] == "task" and created["status"] == "working"
    assert mcp.task(created["taskId"])["tool"] == "write_file"
    done = wait_task(mcp, created["taskId"])
    assert done["status"] == "completed" and done["resultType"] == "complete"
    assert done["result"]["structuredContent"] == {"path": "ext.txt", "size": 2}
    assert (mcp.workspace() / "ext.txt").read_text() == "ok"

    failing = rpc_answer(
        rpc(
            mcp.stack,
            mcp.alice,
            "tools/call",
            {"name": "read_file", "arguments": {"path": "absent.txt"}},
            capabilities=TASKS,
        )
    )["result"]
    failed = wait_task(mcp, failing["taskId"])
    assert failed["status"] == "failed" and failed["error"]["message"].startswith("not_found:")

    sleeping = rpc_answer(
        rpc(
            mcp.stack,
            mcp.alice,
            "tools/call",
            {"name": "run_command", "arguments": {"argv": ["sleep", "120"]}},
            capabilities=TASKS,
        )
    )["result"]
    ack = rpc_answer(rpc(mcp.stack, mcp.alice, "tasks/cancel", {"taskId": sleeping["taskId"]}))
    assert ack["result"]["resultType"] == "complete"
    assert wait_task(mcp, sleeping["taskId"])["status"] == "cancelled"
    assert mcp.task(sleeping["taskId"])["status"] == "cancelled"
    # Another user's task is not found, whatever the method.
    for method in ("tasks/get", "tasks/cancel", "tasks/update"):
        other = rpc_answer(rpc(mcp.stack, mcp.bob, method, {"taskId": created["taskId"]}))
        assert other["error"]["code"] == -32602
    assert rpc(mcp.stack, mcp.alice, "tasks/list").status_code == 404  # removed by the extension


def test_without_the_extension_a_call_answers_its_result(mcp: McpStack) -> None:
    answer = rpc_answer(
        rpc(mcp.stack, mcp.alice, "tools/call", {"name": "list_directory", "arguments": {}})
    )["result"]
    assert answer["isError"] is False and "taskId" not in answer
    assert mcp.task(answer["_meta"]["clawsite/task_id"])["status"] == "succeeded"


def test_invalid_arguments_create_no_task(mcp: McpStack) -> None:
    before = len(mcp.tasks("tool=read_file&limit=500"))
    for arguments in [{"path": "/etc/passwd"}, {"path": "a", "bogus": 1}, {}, "not an object"]:
        answer = rpc_answer(
            rpc(mcp.stack, mcp.alice, "tools/call", {"name": "read_file", "arguments": arguments})
        )
        if arguments == "not an object":
            assert answer["error"]["code"] == -32602
        else:
            assert answer["result"]["isError"] is True, arguments
            assert answer["result"]["content"][0]["text"].startswith("invalid_args")
    assert len(mcp.tasks("tool=read_file&limit=500")) == before


def test_a_cancel_arriving_after_the_client_left_the_call_still_cancels_it(mcp: McpStack) -> None:
    """A legacy client abandoning a call closes its stream, then sends notifications/cancelled:
    the call is gone by then, its task must still be cancelled. Without the cancel, leaving is
    not cancelling (the task goes on)."""
    init = rpc(mcp.stack, mcp.alice, "initialize", {"protocolVersion": "2025-06-18"}, version=None)
    session = {"Mcp-Session-Id": init.headers["mcp-session-id"]}
    task_ids = []
    for request_id, cancel in [(41, False), (42, True)]:
        call = {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "tools/call",
            "params": {"name": "run_command", "arguments": {"argv": ["sleep", "120"]}},
        }
        headers = {
            "Authorization": f"Bearer {mcp.alice}",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2025-06-18",
            **session,
        }
        with httpx.stream("POST", mcp.stack.url + "/mcp", json=call, headers=headers, timeout=60):
            running = wait_for(
                lambda: mcp.tasks("tool=run_command&status=running&limit=1"), timeout=60
            )
        task_ids.append(running[0]["id"])
        if cancel:
            note = {"requestId": request_id, "reason": "gone"}
            notified = rpc(
                mcp.stack,
                mcp.alice,
                "notifications/cancelled",
                note,
                version="2025-06-18",
                headers=session,
                message_id=None,
            )
            assert notified.status_code == 202
            wait_for(lambda: mcp.task(task_ids[1])["status"] == "cancelled", timeout=60)
        else:
            assert mcp.task(task_ids[0])["status"] == "running"
            mcp.stack.request("POST", f"/api/v1/tasks/{task_ids[0]}/cancel", mcp.alice)
            wait_for(lambda: mcp.task(task_ids[0])["status"] == "cancelled", timeout=60)
