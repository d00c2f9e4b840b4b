"""Real processes for end-to-end tests: daphne and ``runworker`` against real Redis and a file
SQLite database (or PostgreSQL), each stack with its own data folder and Redis key prefix."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DAPHNE = str(Path(PYTHON).with_name("daphne"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


TERMINAL = ("succeeded", "failed", "cancelled")


def wait_for(
    condition: Any, timeout: float = 30.0, interval: float = 0.05, message: str = ""
) -> Any:
    """Poll ``condition`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message or condition}")
        time.sleep(interval)


class Stack:
    def __init__(self, data_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.tokens: dict[str, str] = {}  # tokens a test keeps by username
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "clawsite.settings",
            "CLAWSITE_DATA_DIR": str(data_dir),
            "CLAWSITE_REDIS_PREFIX": f"clawsite-e2e-{uuid.uuid4().hex[:10]}",
            "CLAWSITE_WORKER_TICK_SECONDS": "0.2",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        if "DATABASE_URL" not in (extra_env or {}):
            self.env.pop("DATABASE_URL", None)
        self.web: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.logs = data_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode:
            raise AssertionError(
                f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
            )
        return result.stdout

    def migrate(self) -> None:
        self.manage("migrate", "--no-input", "-v0")

    def token(self, username: str, staff: bool = False) -> str:
        output = self.manage("create_api_token", username, *(["--staff"] if staff else []))
        return output.strip().splitlines()[-1]

    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")
        return subprocess.Popen(
            argv, cwd=ROOT, env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )

    def start_web(self) -> None:
        self.web = self._spawn(
            "daphne", [DAPHNE, "-b", "127.0.0.1", "-p", str(self.port), "clawsite.asgi:application"]
        )
        wait_for(self._web_answers, timeout=60, message="daphne to answer")

    def _web_answers(self) -> bool:
        try:
            urllib.request.urlopen(self.url + "/api/v1/openapi.json", timeout=2).read()
            return True
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    def start_worker(self, **env: str) -> subprocess.Popen[bytes]:
        worker = self._spawn(
            f"worker-{len(self.workers)}", [PYTHON, "manage.py", "runworker", "tasks"], env
        )
        self.workers.append(worker)
        return worker

    def request(
        self, method: str, path: str, token: str | None = None, body: Any = None
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=90) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def finished(self, token: str, ids: list[str]) -> list[dict[str, Any]] | None:
        """The tasks ``ids`` (in that order) once every one is terminal, else None."""
        status, body = self.request("POST", "/api/v1/tasks/lookup", token, {"ids": ids})
        assert status == 200, body
        tasks = body["tasks"]
        return tasks if all(t["status"] in TERMINAL for t in tasks) else None

    def wait_finished(
        self, token: str, ids: list[str], timeout: float = 60.0, interval: float = 0.1
    ) -> list[dict[str, Any]]:
        """Wait until every one of the tasks ``ids`` is terminal; they are returned in order."""
        tasks: list[dict[str, Any]] = wait_for(
            lambda: self.finished(token, ids), timeout, interval, f"tasks {ids} to finish"
        )
        return tasks

    def stop(self) -> None:
        for process in [*self.workers, *([self.web] if self.web else [])]:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in [*self.workers, *([self.web] if self.web else [])]:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log_text(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-5000:]}"
            for p in self.logs.glob("*.log")
        )
