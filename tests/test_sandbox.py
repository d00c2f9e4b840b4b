"""The program tools' sandbox: each escape the review found, tried for real (bubblewrap)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tasks_app.errors import ApiError
from tasks_app.services import validate_submission
from tools_app import sandbox
from tools_app.runner import ToolOwner

from .test_tools_process import none_left, processes_in
from .tool_helpers import ALICE, fails, run, workspace_of

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        sandbox._probe("bwrap") is not None, reason=f"no sandbox here: {sandbox._probe('bwrap')}"
    ),
]

SECRET = "top-secret-8c1f0e"
BOB = ToolOwner(2, "bob")


@pytest.fixture
def ws(ws: Path, settings: Any) -> Path:
    settings.CLAWSITE_COMMAND_ALLOWLIST = ["cat", "ls", "find", "git", "sh", "id", "sleep"]
    settings.CLAWSITE_PYTHON_ENABLED = True
    return ws


@pytest.fixture
def secrets(ws: Path, tmp_path: Path) -> list[Path]:
    """A secret beside the workspaces (as the data folder's secret_key is) and in bob's workspace."""
    beside = tmp_path / "secret_key"
    beside.write_text(SECRET)
    bobs = workspace_of(BOB)
    bobs.mkdir(parents=True)
    (bobs / "notes.txt").write_text(SECRET)
    return [beside, bobs / "notes.txt"]


async def command(argv: list[str], **extra: Any) -> dict[str, Any]:
    return (await run("run_command", {"argv": argv, **extra})).result


async def python(code: str, **extra: Any) -> dict[str, Any]:
    return (await run("run_python", {"code": code, **extra})).result


def assert_hidden(result: dict[str, Any]) -> None:
    assert SECRET not in result["stdout"] + result["stderr"]
    assert settings.SECRET_KEY not in result["stdout"] + result["stderr"]
    assert result["exit_code"] != 0


async def test_absolute_paths_outside_the_workspace_do_not_exist(
    ws: Path, secrets: list[Path]
) -> None:
    for secret in secrets:
        assert_hidden(await command(["cat", str(secret)]))
    assert_hidden(await command(["cat", str(Path(settings.DATA_DIR) / "secret_key")]))
    assert_hidden(await command(["ls", str(settings.DATA_DIR)]))
    assert_hidden(await command(["ls", str(workspace_of(BOB))]))
    assert_hidden(await command(["ls", "/root"]))
    assert_hidden(await python(f"print(open({str(secrets[0])!r}).read())"))
    # The workspace itself is there, read-write, at the same relative working folder.
    (ws / "sub").mkdir()
    (ws / "sub" / "mine.txt").write_text("mine")
    assert (await command(["cat", "mine.txt"], cwd="sub"))["stdout"] == "mine"
    assert (await python("open('made.txt', 'w').write('x')"))["exit_code"] == 0
    assert (ws / "made.txt").read_text() == "x"


async def test_find_exec_and_git_alias_run_only_inside(ws: Path, secrets: list[Path]) -> None:
    (ws / "here.txt").write_text("here")
    found = await command(["find", ".", "-name", "here.txt", "-exec", "cat", str(secrets[0]), ";"])
    assert SECRET not in found["stdout"] and "No such file" in found["stderr"]
    shell = await command(["find", ".", "-name", "here.txt", "-exec", "sh", "-c", "ls /; id", ";"])
    listing = shell["stdout"].split()
    assert "root" not in listing and "work" not in listing and "home" not in listing
    assert "uid=1000" in shell["stdout"]  # not root, no capabilities
    alias = await command(["git", "-c", f"alias.x=!cat {secrets[0]}", "x"])
    assert_hidden(alias)
    caps = await command(["sh", "-c", "grep CapEff /proc/self/status"])
    assert caps["stdout"].split() == ["CapEff:", "0000000000000000"]


def redis_port() -> int:
    return int(
        os.environ.get("REDIS_URL", "redis://127.0.0.1:6379").rsplit(":", 1)[1].split("/")[0]
    )


REACH_REDIS = """
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=3).close()
    print("reached")
except OSError as exc:
    print("refused", exc)
"""


async def test_no_network_unless_a_setting_allows_it(ws: Path, settings: Any) -> None:
    with socket.create_connection(("127.0.0.1", redis_port()), timeout=3):
        pass  # Redis is up on the host
    code = REACH_REDIS.format(port=redis_port())
    assert (await python(code))["stdout"].startswith("refused")
    settings.CLAWSITE_PYTHON_NETWORK = True
    assert (await python(code))["stdout"] == "reached\n"


FORK_BOMB = """
import os
while True:
    try:
        os.fork()
    except BlockingIOError:
        open("limit-hit", "w").close()
"""


async def test_a_fork_bomb_stops_at_the_process_limit(ws: Path, settings: Any) -> None:
    settings.CLAWSITE_SANDBOX_MAX_PROCESSES = 16
    error = await fails("run_python", {"code": FORK_BOMB, "timeout": 3})
    assert error.type == "timeout"
    assert (ws / "limit-hit").exists()  # fork itself failed: the limit held
    assert await none_left(ws)


ESCAPE = """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        open("grandchild.started", "w").close()
        time.sleep(60)
    os._exit(0)
while not os.path.exists("grandchild.started"):
    time.sleep(0.01)
print("parent done")
"""


async def test_no_child_survives_its_task_even_after_setsid_and_a_double_fork(ws: Path) -> None:
    result = await python(ESCAPE)
    assert result["stdout"] == "parent done\n" and (ws / "grandchild.started").exists()
    assert await none_left(ws)


async def test_limits_on_memory_file_size_and_open_files(ws: Path, settings: Any) -> None:
    settings.CLAWSITE_COMMAND_MAX_FILE_MB = 1
    big = await command(["sh", "-c", "head -c 3000000 /dev/zero > big"])
    assert big["exit_code"] != 0 and os.path.getsize(ws / "big") <= 1024 * 1024  # noqa: ASYNC240
    files = await python("import os\nfor _ in range(1000): os.open('.', os.O_RDONLY)")
    assert "Too many open files" in files["stderr"]
    settings.CLAWSITE_PYTHON_MEMORY_MB = 128
    memory = await python("x = bytearray(512 * 1024 * 1024)")
    assert "MemoryError" in memory["stderr"]


async def test_the_sandbox_dies_with_the_worker(ws: Path) -> None:
    """The worker killed with SIGKILL (no cleanup runs): bubblewrap's --die-with-parent and the
    pid namespace take every program down with it."""
    argv = sandbox.confine(
        ["/bin/sh", "-c", "setsid sleep 60 & sleep 60"],
        workspace=ws,
        cwd=ws,
        env={"PATH": "/usr/bin:/bin"},
        network=False,
        limits=sandbox.limits(cpu_seconds=60, memory_mb=256, file_mb=1),
    )
    worker = subprocess.Popen(  # noqa: ASYNC220  (the test's stand-in for a worker process)
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time; subprocess.Popen(sys.argv[1:]); time.sleep(60)",
            *argv,
        ]
    )
    try:
        while len(processes_in(ws)) < 3:  # noqa: ASYNC110  (a test may block; polling a process or file)
            await asyncio.sleep(0.05)
        os.kill(worker.pid, signal.SIGKILL)
        assert await none_left(ws)
    finally:
        worker.kill()
        worker.wait()


async def test_tools_are_disabled_with_the_reason_where_no_sandbox_can_be_made(
    ws: Path, settings: Any, secrets: list[Path]
) -> None:
    settings.CLAWSITE_BWRAP = "false"  # a "bubblewrap" that cannot make namespaces
    for tool, args in (("run_command", {"argv": ["id"]}), ("run_python", {"code": "print(1)"})):
        error = await fails(tool, args)
        assert error.type == "tool_disabled" and "sandbox is unavailable" in error.message
        with pytest.raises(ApiError) as caught:
            validate_submission({"tool": tool, "args": args}, None)
        assert caught.value.code == "tool_disabled" and "Sandbox" not in caught.value.message
    # The documented opt-out runs them unconfined, under the limits only.
    settings.CLAWSITE_SANDBOX = "none"
    assert (await command(["cat", str(secrets[0])]))["stdout"] == SECRET
    assert ALICE.username == "alice"
