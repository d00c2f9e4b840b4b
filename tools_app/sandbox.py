"""The sandbox run_command and run_python run in: bubblewrap namespaces plus resource limits.

Inside, a program sees the caller's workspace read-write (at its host path, so the working
folder relative to the workspace is the same), the system's program folders read-only, a few
files of ``/etc`` that programs need to start, a private ``/tmp``, ``/proc`` and ``/dev``, and
nothing else of the host: no data folder, no other workspace, no home folders, no secrets. It
has new user, pid, network, ipc, uts and cgroup namespaces and no capabilities; the network is
the host's only where ``CLAWSITE_COMMAND_NETWORK`` / ``CLAWSITE_PYTHON_NETWORK`` says so.

No process outlives its task: the sandbox's pid 1 (bubblewrap's own init) dies with the
bubblewrap process the worker started (``--die-with-parent``), and the kernel kills every
process of a pid namespace when its init dies, whatever ``setsid`` or double fork they did.

Limits are rlimits set by ``prlimit`` (util-linux) just before the program starts. The process
limit counts per user and user namespace, so inside the sandbox's own user namespace it bounds
that sandbox alone (a fork bomb stops at it) and not the worker's other processes.

``CLAWSITE_SANDBOX=none`` is the documented opt-out for hosts that cannot make namespaces: the
programs then run unconfined, with the same rlimits only. Otherwise, where bubblewrap cannot
make its namespaces, the tools are disabled and say why.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from .errors import ToolError
from .process import SAFE_PATH, ProcessResult, run_process, scrubbed_environment

SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What dynamic linking, ``/usr/bin`` alternatives, locales and TLS need; no secrets (no shadow,
# no ssl/private, no passwd: programs run as an anonymous user).
ETC_FILES = (
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/ssl/certs",
    "/etc/ca-certificates",
    "/etc/mime.types",
)
NETWORK_ETC_FILES = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf")
SANDBOX_UID = 1000
RESERVED_PIDS = 300  # the kernel's: pids below it are not reused once used


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int
    memory_bytes: int
    file_bytes: int
    processes: int
    open_files: int

    def prlimit_options(self) -> list[str]:
        return [
            f"--cpu={self.cpu_seconds}",
            f"--as={self.memory_bytes}",
            f"--fsize={self.file_bytes}",
            f"--nproc={self.processes}",
            f"--nofile={self.open_files}",
            "--core=0",
        ]


def limits(*, cpu_seconds: int, memory_mb: int, file_mb: int) -> Limits:
    return Limits(
        cpu_seconds=max(cpu_seconds, 1),
        memory_bytes=memory_mb * 1024 * 1024,
        file_bytes=file_mb * 1024 * 1024,
        processes=settings.CLAWSITE_SANDBOX_MAX_PROCESSES,
        open_files=settings.CLAWSITE_SANDBOX_MAX_OPEN_FILES,
    )


def enabled() -> bool:
    """False under the documented opt-out ``CLAWSITE_SANDBOX=none``."""
    return settings.CLAWSITE_SANDBOX != "none"


def _system_mounts() -> list[str]:
    options: list[str] = []
    for folder in SYSTEM_FOLDERS:
        if os.path.islink(folder):  # merged /usr: /bin -> usr/bin
            options += ["--symlink", os.readlink(folder), folder]
        elif os.path.isdir(folder):
            options += ["--ro-bind", folder, folder]
    return options


def _etc_mounts(network: bool) -> list[str]:
    files = ETC_FILES + (NETWORK_ETC_FILES if network else ())
    return [option for name in files for option in ("--ro-bind-try", name, name)]


def _outside_system(path: Path) -> bool:
    return not any(path.is_relative_to(folder) for folder in SYSTEM_FOLDERS)


def confine(
    argv: list[str],
    *,
    workspace: Path,
    cwd: Path,
    env: dict[str, str],
    network: bool,
    limits: Limits,
    read_only: tuple[Path, ...] = (),
    hold: tuple[int, int] | None = None,
) -> list[str]:
    """The argv that runs ``argv`` in the sandbox (or, opted out, under the limits only).

    ``read_only``: extra folders the program needs (an interpreter installed outside ``/usr``).
    ``hold``: (info, block) descriptors: bubblewrap writes its namespaces' pid to the first and
    waits on the second before it starts the program.
    """
    limited = [_program("prlimit"), *limits.prlimit_options(), "--", *argv]
    if not enabled():
        return limited
    options = [
        settings.CLAWSITE_BWRAP,
        "--unshare-all",
        *(["--share-net"] if network else []),
        "--die-with-parent",
        "--new-session",  # no TIOCSTI into the worker's terminal
        "--cap-drop",
        "ALL",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
        *_system_mounts(),
        *_etc_mounts(network),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",  # noqa: S108 (the sandbox's own empty tmpfs, not the host's /tmp)
    ]
    if hold is not None:
        options += ["--info-fd", str(hold[0]), "--block-fd", str(hold[1])]
    for folder in read_only:
        if _outside_system(folder):
            options += ["--ro-bind", str(folder), str(folder)]
    options += ["--bind", str(workspace), str(workspace), "--chdir", str(cwd), "--clearenv"]
    for name, value in env.items():
        options += ["--setenv", name, value]
    return [*options, "--", *limited]


async def run_confined(
    argv: list[str],
    *,
    workspace: Path,
    cwd: Path,
    network: bool,
    limits: Limits,
    time_limit: float,
    stdin: bytes | None = None,
    read_only: tuple[Path, ...] = (),
) -> ProcessResult:
    """Run ``argv`` (argv[0] an absolute program path) in the sandbox; see ``run_process``."""
    env = scrubbed_environment(workspace)
    options: dict[str, Any] = {"workspace": workspace, "cwd": cwd, "env": env, "network": network}
    if not enabled():
        return await run_process(
            confine(argv, limits=limits, **options), cwd=cwd, env=env, time_limit=time_limit
        )
    info_read, info_write = os.pipe()
    block_read, block_write = os.pipe()

    async def cap_pids() -> None:
        os.close(info_write)
        os.close(block_read)
        info = await asyncio.to_thread(_read_all, info_read)
        if pid := json.loads(info or "{}").get("child-pid"):
            await _cap_pid_namespace(int(pid), limits.processes)
        os.write(block_write, b"1")  # start the program

    try:
        return await run_process(
            confine(
                argv, limits=limits, read_only=read_only, hold=(info_write, block_read), **options
            ),
            cwd=cwd,
            env=env,
            time_limit=time_limit,
            stdin=stdin,
            pass_fds=(info_write, block_read),
            prepare=cap_pids,
        )
    finally:
        for fd in (info_read, info_write, block_read, block_write):
            with contextlib.suppress(OSError):
                os.close(fd)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


async def _cap_pid_namespace(pid: int, processes: int) -> None:
    """Root's processes ignore RLIMIT_NPROC (the kernel exempts uid 0, which the sandbox's user
    is outside when the worker runs as root). There, the sandbox's pid namespace gets its own
    ``pid_max`` (Linux 6.14+): no more pids, no more processes. Pids below 300 are not reused
    once used, so the cap is 300 plus the limit; a fork bomb still stops there."""
    if os.geteuid() != 0:
        return
    tee = await asyncio.create_subprocess_exec(
        _program("nsenter"),
        f"--target={pid}",
        "--pid",
        "--",
        _program("tee"),
        "/proc/sys/kernel/pid_max",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, error = await tee.communicate(str(RESERVED_PIDS + processes).encode())
    if tee.returncode != 0:
        raise ToolError(
            "sandbox_failed",
            f"could not cap the sandbox's processes: {error.decode('utf-8', 'replace').strip()}",
        )


def _program(name: str) -> str:
    return shutil.which(name, path=SAFE_PATH) or name


def unavailable_reason() -> str | None:
    """Why programs cannot run here, or None. Cached per configuration (one probe a process)."""
    if not enabled():
        return None if shutil.which("prlimit", path=SAFE_PATH) else "prlimit is not installed"
    return _probe(settings.CLAWSITE_BWRAP)


@functools.cache
def _probe(bwrap: str) -> str | None:
    """Start ``true`` in a sandbox exactly as the tools would. Blocking: call it off the loop."""
    if shutil.which(bwrap, path=SAFE_PATH) is None:
        return f"the sandbox is unavailable: {bwrap!r} (bubblewrap) is not installed"
    for tool in ("prlimit", "nsenter", "tee"):
        if shutil.which(tool, path=SAFE_PATH) is None:
            return f"the sandbox is unavailable: {tool} is not installed"
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        argv = confine(
            [_program("true")],
            workspace=folder,
            cwd=folder,
            env={"PATH": SAFE_PATH},
            network=False,
            limits=Limits(5, 256 * 1024 * 1024, 1024, 16, 64),
        )
        try:
            done = subprocess.run(argv, capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"the sandbox is unavailable: {exc}"
    if done.returncode != 0:
        reason = done.stderr.decode("utf-8", "replace").strip() or f"exit {done.returncode}"
        return f"the sandbox is unavailable (bubblewrap cannot make its namespaces): {reason}"
    return None
