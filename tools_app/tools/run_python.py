"""run_python: a snippet in a separate ``python -I`` process, never ``exec`` in the worker.

It runs in the sandbox (tools_app.sandbox) with its limits (CPU seconds from the timeout,
address space, file size, processes, open files), with the system's interpreter
(``CLAWSITE_PYTHON_EXECUTABLE``), not the worker's, whose folder holds the project's packages.
A short bootstrap reads the code from stdin, so it never shows in a process list.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from django.conf import settings
from pydantic import Field

from .. import sandbox
from ..registry import Tool, ToolArgs, ToolContext, offload, register

MAX_CODE_CHARS = 100_000

BOOTSTRAP = """
import sys
code = sys.stdin.read()
sys.stdin.close()
sys.argv = ["-c"]
exec(compile(code, "<run_python>", "exec"), {"__name__": "__main__"})
"""


class RunPythonArgs(ToolArgs):
    code: str = Field(min_length=1, max_length=MAX_CODE_CHARS)
    timeout: float = Field(10.0, gt=0, le=600)


@register
class RunPython(Tool):
    name = "run_python"
    description = (
        "Run Python code in a separate isolated process (python -I) in the workspace, with CPU, "
        "memory and file-size limits and a timeout. Off unless CLAWSITE_PYTHON_ENABLED."
    )
    Args = RunPythonArgs
    default_timeout = 15.0

    def is_enabled(self, user: Any = None) -> bool:
        return self.disabled_reason(user) is None

    def disabled_reason(self, user: Any = None) -> str | None:
        if not settings.CLAWSITE_PYTHON_ENABLED:
            return "the tool 'run_python' is not enabled (CLAWSITE_PYTHON_ENABLED is off)"
        if not os.access(settings.CLAWSITE_PYTHON_EXECUTABLE, os.X_OK):
            return f"the interpreter {settings.CLAWSITE_PYTHON_EXECUTABLE!r} is not installed"
        return sandbox.unavailable_reason()

    async def run(self, args: RunPythonArgs, ctx: ToolContext) -> dict[str, Any]:
        timeout = ctx.limit(args.timeout) or args.timeout
        await offload(ctx.workspace.ensure_exists)
        interpreter = Path(await offload(os.path.realpath, settings.CLAWSITE_PYTHON_EXECUTABLE))
        result = await sandbox.run_confined(
            [str(interpreter), "-I", "-c", BOOTSTRAP],
            workspace=ctx.workspace.root,
            cwd=ctx.workspace.root,
            network=settings.CLAWSITE_PYTHON_NETWORK,
            limits=sandbox.limits(
                cpu_seconds=math.ceil(timeout) + 1,
                memory_mb=settings.CLAWSITE_PYTHON_MEMORY_MB,
                file_mb=settings.CLAWSITE_PYTHON_MAX_FILE_MB,
            ),
            time_limit=timeout,
            # An interpreter installed outside /usr (pyenv, a venv's base) needs its own tree.
            read_only=(interpreter.parent.parent,),
            stdin=args.code.encode("utf-8", "surrogateescape"),
        )
        return {"exit_code": result.exit_code, "stdout": result.stdout, "stderr": result.stderr}
