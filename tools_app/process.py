"""Child processes for run_command and run_python: never a shell, a process group of their own,
a scrubbed environment, capped output, and the whole group killed on timeout or cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import ToolError

# Programs are looked up here only, never on the worker's own PATH.
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
OUTPUT_CAP_BYTES = 1024 * 1024
READ_CHUNK = 64 * 1024
EXIT_POLL_SECONDS = 0.05


@dataclass
class ProcessResult:
    exit_code: int
    stdout: str
    stderr: str
    truncated: bool


def scrubbed_environment(home: Path) -> dict[str, str]:
    """Nothing of the worker's environment (its secrets, DATABASE_URL, tokens) reaches the child."""
    return {"PATH": SAFE_PATH, "HOME": str(home), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


async def _drain(stream: asyncio.StreamReader, cap: int) -> tuple[bytes, bool]:
    """Read to EOF, keeping the first ``cap`` bytes; the rest is read and dropped so the child
    never blocks on a full pipe."""
    kept = bytearray()
    truncated = False
    while chunk := await stream.read(READ_CHUNK):
        room = cap - len(kept)
        if len(chunk) > room:
            truncated = True
        kept += chunk[: max(room, 0)]
    return bytes(kept), truncated


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def run_process(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    time_limit: float,
    stdin: bytes | None = None,
    output_cap: int = OUTPUT_CAP_BYTES,
    pass_fds: tuple[int, ...] = (),
    prepare: Callable[[], Awaitable[None]] | None = None,
) -> ProcessResult:
    """Run ``argv`` (argv[0] an absolute program path) and collect its output.

    ``pass_fds`` are inherited by the child; ``prepare`` runs once it has started, under the
    time limit (the sandbox sets its namespace up there before the program may run).

    Raises ToolError ``timeout`` after ``time_limit`` seconds, having killed the process group.
    """
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # Its own session and process group: one killpg reaches everything it started.
        start_new_session=True,
        pass_fds=pass_fds,
    )
    assert process.stdout is not None and process.stderr is not None  # noqa: S101 (PIPEs)

    stdout, stderr = process.stdout, process.stderr

    async def communicate() -> tuple[tuple[bytes, bool], tuple[bytes, bool]]:
        if prepare is not None:
            await prepare()
        if stdin is not None and process.stdin is not None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                process.stdin.write(stdin)
                await process.stdin.drain()
            process.stdin.close()

        async def drain_both() -> tuple[tuple[bytes, bool], tuple[bytes, bool]]:
            return await asyncio.gather(_drain(stdout, output_cap), _drain(stderr, output_cap))

        readers = asyncio.create_task(drain_both())
        # Usually the pipes close when the program exits. Children it left in the background
        # would hold them open (and Process.wait() waits for the pipes too): once the program
        # itself has exited (returncode is set before the pipes close), its group is killed.
        try:
            while not (await asyncio.wait({readers}, timeout=EXIT_POLL_SECONDS))[0]:
                if process.returncode is not None:
                    _kill_group(process.pid)
        finally:
            readers.cancel()  # a no-op when done; on timeout or cancellation, stop reading
        await process.wait()
        return readers.result()

    try:
        (out, out_cut), (err, err_cut) = await asyncio.wait_for(communicate(), time_limit)
    except TimeoutError:
        raise ToolError(
            "timeout", f"the process ran longer than {time_limit:g} s and was killed"
        ) from None
    finally:
        _kill_group(process.pid)
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(process.wait())
    return ProcessResult(
        exit_code=process.returncode if process.returncode is not None else -signal.SIGKILL,
        stdout=out.decode("utf-8", "replace"),
        stderr=err.decode("utf-8", "replace"),
        truncated=out_cut or err_cut,
    )
