"""Driving the official MCP SDK clients (tests/mcp_clients, in their own venvs) and raw JSON-RPC
against a live stack, and a local HTTP server for http_fetch and llm_chat."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.stack import ROOT, Stack

CLIENTS_DIR = ROOT / "tests" / "mcp_clients"
MODERN = "2026-07-28"

# (id, SDK line, Client mode): the 1.x line; the 2.x line on its own (2026-07-28, found by
# server/discover) and forced onto the initialize handshake.
CLIENTS = [("sdk1", 1, None), ("sdk2", 2, "auto"), ("sdk2-legacy", 2, "legacy")]


def client_python(line: int) -> Path:
    python = ROOT / f".venv-mcp{line}" / "bin" / "python"
    if not python.exists():
        pytest.skip(f"the MCP SDK {line}.x client venv is missing: run scripts/setup-mcp-clients")
    return python


def run_client(
    client: tuple[str, int, str | None],
    stack: Stack,
    token: str,
    steps: list[dict[str, Any]],
    *,
    background: bool = False,
) -> Any:
    """Run the client program; its JSON answers (the first: the negotiated version)."""
    _, line, mode = client
    argv = [
        str(client_python(line)),
        str(CLIENTS_DIR / f"client_v{line}.py"),
        stack.url + "/mcp",
        token,
        json.dumps(steps),
    ]
    env = {"PATH": os.environ.get("PATH", ""), "MCP_CLIENT_MODE": mode or "auto"}
    if background:
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    return client_answers(done.returncode, done.stdout, done.stderr, stack)


def client_answers(code: int, stdout: str, stderr: str, stack: Stack) -> Any:
    assert code == 0, f"client failed ({code}):\n{stderr[-4000:]}\n{stack.log_text()}"
    return json.loads(stdout.strip().splitlines()[-1])


def rpc(
    stack: Stack,
    token: str | None,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    version: str | None = MODERN,
    capabilities: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    message_id: int | None = 1,
) -> httpx.Response:
    """One raw JSON-RPC POST; with ``version`` 2026-07-28, the envelope and headers it needs."""
    params = dict(params or {})
    sent = {"Accept": "application/json, text/event-stream"}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    if version == MODERN:
        params["_meta"] = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": capabilities or {},
            **params.get("_meta", {}),
        }
        sent.update({"MCP-Protocol-Version": MODERN, "Mcp-Method": method})
        if "name" in params or "uri" in params:
            sent["Mcp-Name"] = params.get("name") or params["uri"]
    elif version is not None:
        sent["MCP-Protocol-Version"] = version
    sent.update(headers or {})
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if message_id is not None:
        body["id"] = message_id
    return httpx.post(stack.url + "/mcp", json=body, headers=sent, timeout=60)


def rpc_answer(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC answer of a JSON or SSE response (the last SSE event)."""
    if response.headers["content-type"].startswith("text/event-stream"):
        events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
        return json.loads(events[-1])
    return response.json()


class LocalHttp:
    """127.0.0.1: a page for http_fetch, and an OpenAI-style streaming chat for llm_chat."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = b"hello from the local server"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                chunk = {"model": "local", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}
                usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
                final = {"model": "local", "choices": [], "usage": usage}
                for event in (chunk, final):
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class McpStack:
    def __init__(self, stack: Stack, http: LocalHttp) -> None:
        self.stack, self.http = stack, http
        self.alice, self.bob = stack.token("alice"), stack.token("bob")

    def task(self, task_id: str, token: str | None = None) -> dict[str, Any]:
        status, task = self.stack.request("GET", f"/api/v1/tasks/{task_id}", token or self.alice)
        assert status == 200, task
        return task

    def tasks(self, query: str, token: str | None = None) -> list[dict[str, Any]]:
        status, page = self.stack.request("GET", f"/api/v1/tasks?{query}", token or self.alice)
        assert status == 200, page
        return page["tasks"]

    def workspace(self, user: str = "alice") -> Path:
        return self.stack.data_dir / "workspaces" / user


def mcp_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpStack]:
    """A test module's stack (its ``mcp`` fixture): every tool enabled, alice's and bob's tokens."""
    http = LocalHttp()
    stack = Stack(
        tmp_path_factory.mktemp("mcp"),
        {
            "CLAWSITE_COMMAND_ALLOWLIST": "sleep",
            "CLAWSITE_PYTHON_ENABLED": "1",
            "CLAWSITE_HTTP_ALLOW_PRIVATE": "1",
            "CLAWSITE_LLM_BASE_URL": http.url + "/v1",
            # Files written a moment ago are cacheable at once (the racy-file rule is tested
            # with the cache).
            "CLAWSITE_CACHE_RACY_SECONDS": "0",
        },
    )
    stack.migrate()
    env = McpStack(stack, http)
    stack.start_web()
    stack.start_worker()
    yield env
    stack.stop()
    http.close()
