"""run_command and run_python: real child processes, no shell, limits, killed groups."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tasks_app.errors import ApiError
from tasks_app.services import validate_submission

from .tool_helpers import fails, run

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def allow(settings: Any) -> Any:
    settings.CLAWSITE_COMMAND_ALLOWLIST = ["echo", "sh", "printenv", "pwd", "head", "sleep"]
    return settings


async def test_run_command_is_disabled_with_an_empty_allow_list(ws: Path, settings: Any) -> None:
    settings.CLAWSITE_COMMAND_ALLOWLIST = []
    assert (await fails("run_command", {"argv": ["echo", "hi"]})).type == "tool_disabled"
    with pytest.raises(ApiError) as caught:
        validate_submission({"tool": "run_command", "args": {"argv": ["echo", "hi"]}}, None)
    assert caught.value.code == "tool_disabled" and caught.value.status == 403


async def test_run_command_runs_an_allowed_program(ws: Path, allow: Any) -> None:
    result = (await run("run_command", {"argv": ["echo", "hello", "world"]})).result
    assert result == {"exit_code": 0, "stdout": "hello world\n", "stderr": "", "truncated": False}
    (ws / "sub").mkdir()
    assert (await run("run_command", {"argv": ["pwd"], "cwd": "sub"})).result[
        "stdout"
    ] == f"{ws / 'sub'}\n"
    failing = (await run("run_command", {"argv": ["sh", "-c", "echo oops >&2; exit 3"]})).result
    assert failing["exit_code"] == 3 and failing["stderr"] == "oops\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["echo", "a; touch pwned"],
        ["echo", "a", "&&", "touch", "pwned"],
        ["echo", "a", "|", "touch", "pwned"],
        ["echo", "$(touch pwned)"],
        ["echo", "`touch pwned`"],
        ["echo", "a", ">", "pwned"],
    ],
)
async def test_run_command_never_uses_a_shell(ws: Path, allow: Any, argv: list[str]) -> None:
    result = (await run("run_command", {"argv": argv})).result
    assert result["stdout"] == " ".join(argv[1:]) + "\n"  # printed verbatim, not interpreted
    assert not (ws / "pwned").exists()
    assert list(ws.iterdir()) == []  # noqa: ASYNC240  (a test may block; polling a process or file)


async def test_run_command_refuses_programs_off_the_list_and_paths(ws: Path, allow: Any) -> None:
    for argv in (["touch", "x"], ["/bin/echo", "x"], ["./echo"], [""], []):
        assert (await fails("run_command", {"argv": argv})).type == "invalid_args"
    with pytest.raises(ApiError) as caught:
        validate_submission({"tool": "run_command", "args": {"argv": ["rm", "-rf", "/"]}}, None)
    assert caught.value.code == "invalid_args"
    assert not (ws / "x").exists()
    assert (await fails("run_command", {"argv": ["echo"], "cwd": "missing"})).type == "not_found"


async def test_run_command_environment_is_scrubbed(ws: Path, allow: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("CLAWSITE_SECRET_FOR_TEST", "s3cret")
    result = (await run("run_command", {"argv": ["printenv"]})).result
    env = dict(line.split("=", 1) for line in result["stdout"].splitlines())
    assert "CLAWSITE_SECRET_FOR_TEST" not in env and "DATABASE_URL" not in env
    assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin" and env["HOME"] == str(ws)


async def test_run_command_output_is_capped(ws: Path, allow: Any) -> None:
    result = (await run("run_command", {"argv": ["head", "-c", "3000000", "/dev/zero"]})).result
    assert result["exit_code"] == 0 and result["truncated"] is True
    assert len(result["stdout"]) == 1024 * 1024


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead
    except FileNotFoundError:
        return False


def processes_in(folder: Path) -> list[int]:
    """Live host pids whose working folder is in ``folder``: a sandboxed program's own pids are
    those of its pid namespace, so the test finds them from the host by where they work."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                continue
            if Path(cwd).is_relative_to(folder) and _alive(int(entry)):
                found.append(int(entry))
    return found


async def none_left(folder: Path) -> bool:
    deadline = time.monotonic() + 10
    while processes_in(folder) and time.monotonic() < deadline:  # noqa: ASYNC110  (a test may block; polling a process or file)
        await asyncio.sleep(0.05)
    return not processes_in(folder)


async def test_timeout_kills_the_whole_process_group(ws: Path, allow: Any) -> None:
    script = "sleep 30 & echo $! > child.pid; wait"
    error = await fails("run_command", {"argv": ["sh", "-c", script], "timeout": 1})
    assert error.type == "timeout"
    assert (ws / "child.pid").read_text().strip()  # the child had started
    assert await none_left(ws)


async def test_cancellation_kills_the_whole_process_group(ws: Path, allow: Any) -> None:
    task = asyncio.create_task(
        run("run_command", {"argv": ["sh", "-c", "sleep 30 & echo $! > child.pid; wait"]})
    )
    while not (ws / "child.pid").exists() or not (ws / "child.pid").read_text().strip():  # noqa: ASYNC110  (a test may block; polling a process or file)
        await asyncio.sleep(0.02)
    assert processes_in(ws)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await none_left(ws)


async def test_background_children_do_not_hold_the_answer(ws: Path, allow: Any) -> None:
    # The program exits at once but leaves a child holding stdout: the answer must not wait for it.
    result = (
        await run(
            "run_command", {"argv": ["sh", "-c", "sleep 30 & echo $! > child.pid; echo done"]}
        )
    ).result
    assert result["stdout"] == "done\n"
    assert (ws / "child.pid").read_text().strip()
    assert await none_left(ws)


async def test_task_timeout_caps_the_tool_timeout(ws: Path, allow: Any) -> None:
    error = await fails("run_command", {"argv": ["sleep", "30"], "timeout": 600}, task_timeout=0.5)
    assert error.type == "timeout"


# --- run_python ---------------------------------------------------------------------------------------


@pytest.fixture
def python_on(settings: Any) -> Any:
    settings.CLAWSITE_PYTHON_ENABLED = True
    return settings


async def test_run_python_is_off_by_default(ws: Path) -> None:
    assert (await fails("run_python", {"code": "print(1)"})).type == "tool_disabled"


async def test_run_python_runs_in_a_separate_isolated_process(ws: Path, python_on: Any) -> None:
    code = "import os, sys\nprint(os.getpid() != int(sys.argv[0] == '-c'))\nprint(os.getcwd())\nprint(sys.flags.isolated)\nopen('made.txt', 'w').write('x')"
    result = (await run("run_python", {"code": code})).result
    lines = result["stdout"].splitlines()
    assert result["exit_code"] == 0 and lines[1] == str(ws) and lines[2] == "1"
    assert (ws / "made.txt").read_text() == "x"
    assert os.getpid() != 0
    crash = (await run("run_python", {"code": "raise SystemExit('bad')"})).result
    assert crash["exit_code"] == 1 and "bad" in crash["stderr"]


async def test_run_python_limits(ws: Path, python_on: Any) -> None:
    python_on.CLAWSITE_PYTHON_MEMORY_MB = 256
    python_on.CLAWSITE_PYTHON_MAX_FILE_MB = 1
    memory = (await run("run_python", {"code": "x = bytearray(1024 * 1024 * 1024)"})).result
    assert memory["exit_code"] != 0 and "MemoryError" in memory["stderr"]
    big = (
        await run("run_python", {"code": "open('big', 'wb').write(b'x' * 2 * 1024 * 1024)"})
    ).result
    assert big["exit_code"] != 0 and os.path.getsize(ws / "big") <= 1024 * 1024  # noqa: ASYNC240  (a test may block; polling a process or file)
    error = await fails("run_python", {"code": "while True: pass", "timeout": 1})
    assert error.type == "timeout"
