"""Backpressure reaches MCP: a tools/call over the caller's rate or past the queue's room is a
JSON-RPC error (code -32000) whose data is the API's error body, retry_after included; nothing
is created. Real daphne, no worker (tasks stay queued)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.mcp_helpers import rpc, rpc_answer
from tests.stack import Stack

pytestmark = pytest.mark.timeout(180)
TASKS: dict[str, Any] = {"extensions": {"io.modelcontextprotocol/tasks": {}}}
CALL = {"name": "write_file", "arguments": {"path": "x.txt", "content": "x"}}


def call(stack: Stack, token: str) -> dict[str, Any]:
    return rpc_answer(rpc(stack, token, "tools/call", CALL, capabilities=TASKS))


def queued(stack: Stack, token: str) -> int:
    status, page = stack.request("GET", "/api/v1/tasks?limit=500", token)
    assert status == 200
    return len(page["tasks"])


@pytest.mark.parametrize(
    ("env", "code"),
    [
        ({"CLAWSITE_API_RATE": "5/h"}, "rate_limited"),
        ({"CLAWSITE_MAX_QUEUED_PER_USER": "2"}, "queue_full"),
    ],
)
def test_mcp_calls_past_a_limit_are_json_rpc_errors_and_create_nothing(
    tmp_path: Path, env: dict[str, str], code: str
) -> None:
    stack = Stack(tmp_path / "stack", env)
    stack.migrate()
    stack.start_web()
    try:
        token, staff = stack.token("alice"), stack.token("carol", staff=True)
        fits = 5 if code == "rate_limited" else 2
        answers = [call(stack, token) for _ in range(fits + 1)]
        assert all("result" in answer for answer in answers[:fits]), answers
        error = answers[-1]["error"]
        assert error["code"] == -32000 and error["data"]["code"] == code
        assert error["data"]["details"]["retry_after"] >= 1
        assert queued(stack, staff) == fits  # the refused call created nothing
    finally:
        stack.stop()
