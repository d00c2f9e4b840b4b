"""MCP end to end: real daphne and worker processes, real Redis, and the official MCP Python SDK
(1.x and 2.x, each from its own venv) as the client. Every answer is checked against what
ClawSite itself says (the REST API, the files, the websocket), not only against the client."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.kill_helpers import ledger_file, ledger_stack
from tests.mcp_helpers import (
    CLIENTS,
    McpStack,
    client_answers,
    mcp_stack,
    rpc,
    rpc_answer,
    run_client,
)
from tests.stack import wait_for
from tests.tools_for_tests import read_ledger

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def mcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpStack]:
    yield from mcp_stack(tmp_path_factory)


TERMINAL = ("succeeded", "failed", "cancelled")


def call(name: str, args: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"op": "call", "name": name, "args": args, **extra}


def task_id_of(answer: dict[str, Any]) -> str:
    return answer["result"]["_meta"]["clawsite/task_id"]


def text_of(answer: dict[str, Any]) -> str:
    [content] = answer["result"]["content"]
    assert content["type"] == "text"
    return content["text"]


@pytest.mark.parametrize("client", CLIENTS, ids=[c[0] for c in CLIENTS])
def test_tools_list_is_the_callers_enabled_tools_with_their_schemas(
    mcp: McpStack, client: Any
) -> None:
    version, tools = run_client(client, mcp.stack, mcp.alice, [{"op": "list_tools"}])
    assert version["protocolVersion"] == ("2026-07-28" if client[0] == "sdk2" else "2025-11-25")
    _, api = mcp.stack.request("GET", "/api/v1/tools", mcp.alice)
    enabled = {t["name"]: t for t in api["tools"] if t["enabled"]}
    assert {t["name"] for t in tools} == set(enabled)
    for tool in tools:
        described = enabled[tool["name"]]
        assert tool["inputSchema"] == described["args_schema"]
        assert tool["description"] == described["description"]
        hints = tool["annotations"]
        assert hints["readOnlyHint"] is described["read_only"]
        assert hints["destructiveHint"] is (tool["name"] in {"write_file", "delete_path"})
        assert hints["openWorldHint"] is (tool["name"] in {"http_fetch", "llm_chat"})


def every_tool_call(folder: str, http_url: str) -> dict[str, dict[str, Any]]:
    """One call of each tool, in an order where each finds what it needs."""
    return {
        "create_directory": {"path": folder},
        "write_file": {"path": f"{folder}/notes.txt", "content": "alpha\nneedle here\n"},
        "read_file": {"path": f"{folder}/notes.txt"},
        "list_directory": {"path": folder},
        "file_info": {"path": f"{folder}/notes.txt"},
        "hash_file": {"path": f"{folder}/notes.txt"},
        "search_files": {"path": folder, "contains": "needle"},
        "http_fetch": {"url": http_url + "/page"},
        "llm_chat": {"prompt": "hello"},
        "run_command": {"argv": ["sleep", "0"]},
        "run_python": {"code": "print(6 * 7)"},
        "delete_path": {"path": f"{folder}/notes.txt"},
    }


@pytest.mark.parametrize("client", CLIENTS, ids=[c[0] for c in CLIENTS])
def test_every_enabled_tool_called_through_mcp_is_a_clawsite_task(
    mcp: McpStack, client: Any
) -> None:
    calls = every_tool_call(client[0], mcp.http.url)
    _, tools, *answers = run_client(
        client,
        mcp.stack,
        mcp.alice,
        [{"op": "list_tools"}, *(call(name, args) for name, args in calls.items())],
    )
    assert {t["name"] for t in tools} == set(calls)  # a tool enabled later needs a call here
    for (name, args), answer in zip(calls.items(), answers, strict=True):
        result = answer["result"]
        assert result["isError"] is False, (name, result)
        task = mcp.task(task_id_of(answer))
        assert (task["tool"], task["args"], task["status"]) == (name, args, "succeeded")
        assert task["source"] == "mcp"
        assert result["structuredContent"] == task["result"]
        assert json.loads(text_of(answer)) == task["result"]
    by_name = dict(zip(calls, answers, strict=True))
    assert by_name["read_file"]["result"]["structuredContent"]["content"] == "alpha\nneedle here\n"
    assert by_name["search_files"]["result"]["structuredContent"]["matches"][0]["line"] == 2
    assert by_name["http_fetch"]["result"]["structuredContent"]["body"].startswith("hello from")
    assert by_name["run_python"]["result"]["structuredContent"]["stdout"].strip() == "42"
    assert by_name["llm_chat"]["result"]["structuredContent"]["content"] == "Hi"
    folder = mcp.workspace() / client[0]
    assert folder.is_dir() and not (folder / "notes.txt").exists()  # written, then deleted


def test_a_path_escape_is_an_error_and_nothing_outside_is_touched(
    mcp: McpStack, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    workspace = mcp.workspace()
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / "exit").symlink_to(outside)
    before = len(mcp.tasks("tool=write_file&limit=500"))
    _, lexical, through_link = run_client(
        CLIENTS[0],
        mcp.stack,
        mcp.alice,
        [
            call("write_file", {"path": "../escaped.txt", "content": "x"}),
            call("write_file", {"path": "exit/escaped.txt", "content": "x"}),
        ],
    )
    # Refused before running: an error result, and no task at all.
    assert lexical["result"]["isError"] is True
    assert "_meta" not in lexical["result"]
    assert text_of(lexical).startswith("invalid_args:") and "escapes" in text_of(lexical)
    # Found while running (a symlink): the task fails, the answer says why.
    assert through_link["result"]["isError"] is True
    assert text_of(through_link).startswith("path_outside_workspace:")
    failed = mcp.task(task_id_of(through_link))
    assert failed["status"] == "failed" and failed["error"]["type"] == "path_outside_workspace"
    assert len(mcp.tasks("tool=write_file&limit=500")) == before + 1
    assert list(outside.iterdir()) == []
    assert not (workspace.parent / "escaped.txt").exists()


def test_a_second_identical_call_is_answered_from_the_cache(mcp: McpStack) -> None:
    workspace = mcp.workspace()
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / "cached.txt").write_text("cache me\n" * 100)
    args = {"path": "cached.txt", "algorithm": "sha256"}
    _, first, second = run_client(
        CLIENTS[1], mcp.stack, mcp.alice, [call("hash_file", args), call("hash_file", args)]
    )
    assert task_id_of(first) != task_id_of(second)  # two tasks, the second a cache hit
    assert mcp.task(task_id_of(first))["cache_hit"] is False
    assert mcp.task(task_id_of(second))["cache_hit"] is True
    assert first["result"]["structuredContent"] == second["result"]["structuredContent"]


@pytest.mark.parametrize("client", CLIENTS[:2], ids=[c[0] for c in CLIENTS[:2]])
def test_a_failing_call_answers_is_error_with_the_error_type(mcp: McpStack, client: Any) -> None:
    _, missing, unknown = run_client(
        client,
        mcp.stack,
        mcp.alice,
        [call("read_file", {"path": "no/such/file.txt"}), call("no_such_tool", {})],
    )
    assert missing["result"]["isError"] is True
    assert text_of(missing).startswith("not_found: ")
    task = mcp.task(task_id_of(missing))
    assert task["status"] == "failed" and task["error"]["type"] == "not_found"
    assert "structuredContent" not in missing["result"]
    assert unknown["error"]["code"] == -32602  # the spec's answer to an unknown tool


@pytest.mark.parametrize("client", CLIENTS[:2], ids=[c[0] for c in CLIENTS[:2]])
def test_a_long_search_sends_progress_notifications(mcp: McpStack, client: Any) -> None:
    folder = mcp.workspace() / f"many-{client[0]}"
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(6000):
        (folder / f"f{index:05}.txt").write_text(f"line {index}\n" * 20)
    args = {"path": folder.name, "contains": "line 5999", "max_results": 10}
    _, answer = run_client(
        client, mcp.stack, mcp.alice, [call("search_files", args, progress=True)]
    )
    assert answer["result"]["isError"] is False
    assert answer["result"]["structuredContent"]["files_scanned"] == 6000
    progress = answer["progress"]
    assert progress, "no notifications/progress arrived"
    values = [p["progress"] for p in progress]
    assert values == sorted(set(values))  # increasing, as the spec requires
    assert all(p["total"] in (None, 6000) for p in progress)


@pytest.mark.parametrize("client", CLIENTS, ids=[c[0] for c in CLIENTS])
def test_cancelling_a_running_call_cancels_its_task(mcp: McpStack, client: Any) -> None:
    _, cancelled = run_client(
        client,
        mcp.stack,
        mcp.alice,
        [{"op": "cancel", "name": "run_command", "args": {"argv": ["sleep", "120"]}}],
    )
    # Until terminal: "not running" also matches a moment in "queued" (a retry's backoff when
    # the attempt failed before the cancel reached it; the flag then cancels it at its claim).
    task = wait_for(
        lambda: (t := mcp.task(cancelled["task_id"]))["status"] in TERMINAL and t,
        timeout=90,
        message="the cancelled task to end",
    )
    assert task["status"] == "cancelled" and task["error"]["type"] == "cancelled", task


def test_task_augmented_calls_through_to_their_results(mcp: McpStack) -> None:
    """2025-11-25's task parameter, with the 1.x SDK's experimental task API."""
    workspace = mcp.workspace()
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / "task.txt").write_text("as a task")
    _, done, cancelled = run_client(
        CLIENTS[0],
        mcp.stack,
        mcp.alice,
        [
            {"op": "call_as_task", "name": "read_file", "args": {"path": "task.txt"}},
            {"op": "cancel_task", "name": "run_command", "args": {"argv": ["sleep", "120"]}},
        ],
    )
    task_id = done["created"]["task"]["taskId"]
    assert done["created"]["task"]["status"] == "working"
    assert mcp.task(task_id)["tool"] == "read_file"  # the taskId is the ClawSite task's id
    assert done["result"]["structuredContent"]["content"] == "as a task"
    assert done["result"]["_meta"]["io.modelcontextprotocol/related-task"]["taskId"] == task_id
    assert done["final"]["status"] == "completed" and done["listed"]
    assert cancelled["final"]["status"] == "cancelled"
    assert mcp.task(cancelled["final"]["taskId"])["status"] == "cancelled"


def test_two_users_see_only_their_own_workspace_and_tasks(mcp: McpStack) -> None:
    (mcp.workspace("alice")).mkdir(parents=True, exist_ok=True)
    (mcp.workspace("alice") / "secret.txt").write_text("alice's")
    _, alices = run_client(
        CLIENTS[1], mcp.stack, mcp.alice, [call("read_file", {"path": "secret.txt"})]
    )
    alice_task = task_id_of(alices)
    _, read, resources, listed = run_client(
        CLIENTS[0],
        mcp.stack,
        mcp.bob,
        [
            call("read_file", {"path": "secret.txt"}),
            {"op": "list_resources"},
            {"op": "read_resource", "uri": "clawsite://workspace/secret.txt"},
        ],
    )
    assert read["result"]["isError"] is True and text_of(read).startswith("not_found")
    assert all("secret" not in r["uri"] for r in resources)
    assert "error" in listed
    assert mcp.task(task_id_of(read), mcp.bob)["status"] == "failed"
    status, _ = mcp.stack.request("GET", f"/api/v1/tasks/{alice_task}", mcp.bob)
    assert status == 404
    answer = rpc_answer(rpc(mcp.stack, mcp.bob, "tasks/get", {"taskId": alice_task}))
    assert answer["error"]["code"] == -32602


def test_resources_are_the_workspace_files_read_through_the_sandbox(mcp: McpStack) -> None:
    workspace = mcp.workspace()
    (workspace / "docs").mkdir(parents=True, exist_ok=True)
    (workspace / "docs" / "read me.md").write_text("# hello")
    (workspace / "blob.bin").write_bytes(bytes(range(256)))
    uri = "clawsite://workspace/docs/read%20me.md"
    for client in CLIENTS[:2]:
        _, listed, text, binary, escape = run_client(
            client,
            mcp.stack,
            mcp.alice,
            [
                {"op": "list_resources"},
                {"op": "read_resource", "uri": uri},
                {"op": "read_resource", "uri": "clawsite://workspace/blob.bin"},
                {"op": "read_resource", "uri": "clawsite://workspace/..%2Fbob%2Fsecret.txt"},
            ],
        )
        assert {"uri": uri, "name": "docs/read me.md", "mimeType": "text/markdown"}.items() <= (
            next(r for r in listed if r["uri"] == uri).items()
        )
        assert text["contents"][0]["text"] == "# hello"
        assert binary["contents"][0]["blob"]
        assert escape["error"]["code"] == -32602 and "invalid_path" in escape["error"]["message"]


@pytest.mark.parametrize("client", CLIENTS[:2], ids=[c[0] for c in CLIENTS[:2]])
def test_fifty_concurrent_calls_from_one_client_are_all_answered(
    mcp: McpStack, client: Any
) -> None:
    _, answers = run_client(
        client,
        mcp.stack,
        mcp.alice,
        [{"op": "concurrent", "n": 50, "name": "list_directory", "args": {"path": "."}}],
    )
    assert len(answers) == 50
    assert all(a["result"]["isError"] is False for a in answers)
    ids = {task_id_of(a) for a in answers}
    assert len(ids) == 50
    status, found = mcp.stack.request("POST", "/api/v1/tasks/lookup", mcp.alice, {"ids": list(ids)})
    assert status == 200 and {t["status"] for t in found["tasks"]} == {"succeeded"}
    assert len(found["tasks"]) == 50


def test_mcp_tasks_are_watched_live_and_counted_like_any_task(mcp: McpStack) -> None:
    async def watch() -> tuple[list[dict[str, Any]], Any]:
        url = mcp.stack.url.replace("http", "ws") + "/ws/tasks/"
        headers = {"Authorization": f"Bearer {mcp.alice}"}
        seen: list[dict[str, Any]] = []
        async with websockets.connect(url, additional_headers=headers) as ws:
            calling = asyncio.create_task(
                asyncio.to_thread(
                    run_client,
                    CLIENTS[1],
                    mcp.stack,
                    mcp.alice,
                    [call("list_directory", {"path": "."})],
                )
            )
            while not calling.done() or not seen:
                try:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 1))
                except TimeoutError:
                    continue
                seen += frame["tasks"] if frame["type"] == "task.updates" else [frame["task"]]
            return seen, await calling

    seen, (_, answer) = asyncio.run(watch())
    task_id = task_id_of(answer)
    wait_for(lambda: any(t["id"] == task_id and t["status"] == "succeeded" for t in seen) or None)
    with urllib.request.urlopen(mcp.stack.url + "/metrics", timeout=30) as response:
        metrics = response.read().decode()
    assert 'clawsite_tasks_submitted_total{tool="list_directory"}' in metrics


def test_a_call_survives_its_worker_killed_mid_task(tmp_path: Path) -> None:
    stack, token = ledger_stack(tmp_path / "kill")
    try:
        first = stack.start_worker()
        calling = run_client(
            CLIENTS[0],
            stack,
            token,
            [call("test_ledger", {"key": "k1", "seconds": 3})],
            background=True,
        )
        ledger = ledger_file(stack)
        wait_for(lambda: read_ledger(ledger), timeout=120, message="the tool to start")
        first.kill()
        first.wait(timeout=30)
        stack.start_worker()
        stdout, stderr = calling.communicate(timeout=240)
        _, answer = client_answers(calling.returncode, stdout.decode(), stderr.decode(), stack)
        assert answer["result"]["isError"] is False, answer
        _, task = stack.request("GET", f"/api/v1/tasks/{task_id_of(answer)}", token)
        assert task["status"] == "succeeded" and task["attempts"] == 2
        events = [event for event, key, _, _ in read_ledger(ledger) if key == "k1"]
        assert events.count("start") == 2 and events.count("end") == 1
    finally:
        stack.stop()
