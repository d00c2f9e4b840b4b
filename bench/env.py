"""The bench's private world: one data folder, one Redis db index and key prefix per queue, the
servers it starts (all on 127.0.0.1), and their shutdown. Nothing is left behind: processes are
stopped and the run's Redis keys deleted by SCAN over its own prefix (never FLUSHDB)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent
REDIS_HOST = os.environ.get("BENCH_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("BENCH_REDIS_PORT", "6379"))
# One db index per system under test, so their keys never meet the engineers' (db 0) or each other's.
DB_INDEX = {"clawsite": 10, "celery": 11, "dramatiq": 12, "huey": 13, "prototype": 14}


def redis_url(system: str) -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{DB_INDEX[system]}"


class BenchEnv:
    """Created once per run, before Django is set up in this process."""

    def __init__(self, keep: bool = False) -> None:
        self.run_id = uuid.uuid4().hex[:10]
        self.prefix = f"clawsite-bench-{self.run_id}"
        self.keep = keep
        self.data_dir = Path(
            tempfile.mkdtemp(prefix="clawsite-bench-", dir=os.environ.get("BENCH_DATA_ROOT"))
        )
        self.logs = self.data_dir / "logs"
        self.logs.mkdir()
        self.processes: list[subprocess.Popen[bytes]] = []
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "CLAWSITE_DATA_DIR": str(self.data_dir),
            "CLAWSITE_REDIS_PREFIX": self.prefix,
            "REDIS_URL": redis_url("clawsite"),
            "CLAWSITE_WORKER_TICK_SECONDS": "0.2",
            # Above the default 8: the claim batch is as large as the free slots, and the bench's
            # tasks are short (BENCHMARKS.md says so beside the figures).
            "CLAWSITE_WORKER_CONCURRENCY": os.environ.get("CLAWSITE_WORKER_CONCURRENCY", "64"),
            "CLAWSITE_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        self.env.pop("DATABASE_URL", None)  # the default: SQLite (WAL) in the data folder

    def setup_django(self) -> None:
        os.environ.update(
            {
                k: v
                for k, v in self.env.items()
                if k.startswith(("CLAWSITE_", "DJANGO_", "REDIS_URL"))
            }
        )
        os.environ.pop("DATABASE_URL", None)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", "--no-input", verbosity=0)

    # --- processes -----------------------------------------------------------------------------------

    def spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")  # kept open for the process
        process = subprocess.Popen(
            argv, cwd=ROOT, env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )
        self.processes.append(process)
        return process

    def start_daphne(self, port: int, **env: str) -> subprocess.Popen[bytes]:
        return self.spawn(
            f"daphne-{port}",
            [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "clawsite.asgi:application"],
            env,
        )

    def start_worker(self, name: str = "worker", **env: str) -> subprocess.Popen[bytes]:
        return self.spawn(name, [PYTHON, "manage.py", "runworker", "tasks"], env)

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process in self.processes:
            self.processes.remove(process)

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs.glob("*.log"))

    # --- the end -------------------------------------------------------------------------------------

    def delete_redis_keys(self) -> int:
        """Delete every key of this run (all its prefixes hold the run id), db by db, by SCAN."""
        deleted = 0
        for db in sorted(set(DB_INDEX.values())):
            client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
            batch: list[Any] = []
            for key in client.scan_iter(match=f"*{self.run_id}*", count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += client.delete(*batch)
                    batch = []
            if batch:
                deleted += client.delete(*batch)
            client.close()
        return deleted

    def close(self) -> None:
        for process in list(self.processes):
            self.stop(process, timeout=20)
        with contextlib.suppress(Exception):  # Django never set up: nothing to close
            from tasks_app.db import shutdown_db_threads

            shutdown_db_threads()
        self.delete_redis_keys()
        if not self.keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wait_port(port: int, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")
