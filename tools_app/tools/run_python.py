"""run_python: a snippet in a separate ``python -I`` process, never ``exec`` in the worker.

The limits (CPU seconds, address space, file size, open files) are set by a short bootstrap in
the child before it runs the code, which it reads from stdin. Not ``preexec_fn``: that runs
between fork and exec in a process with threads (the worker's database and tool threads), which
Python documents as unsafe.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from django.conf import settings
from pydantic import Field

from ..process import run_process, scrubbed_environment
from ..registry import Tool, ToolArgs, ToolContext, offload, register

MAX_CODE_CHARS = 100_000

BOOTSTRAP = """
import resource, sys
def limit(kind, value):
    resource.setrlimit(kind, (value, value))
limit(resource.RLIMIT_CPU, int(sys.argv[1]))
limit(resource.RLIMIT_AS, int(sys.argv[2]))
limit(resource.RLIMIT_FSIZE, int(sys.argv[3]))
limit(resource.RLIMIT_NOFILE, 64)
limit(resource.RLIMIT_CORE, 0)
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
        return bool(settings.CLAWSITE_PYTHON_ENABLED)

    async def run(self, args: RunPythonArgs, ctx: ToolContext) -> dict[str, Any]:
        timeout = ctx.limit(args.timeout) or args.timeout
        await offload(ctx.workspace.ensure_exists)
        result = await run_process(
            [
                sys.executable,
                "-I",
                "-c",
                BOOTSTRAP,
                str(math.ceil(timeout) + 1),
                str(settings.CLAWSITE_PYTHON_MEMORY_MB * 1024 * 1024),
                str(settings.CLAWSITE_PYTHON_MAX_FILE_MB * 1024 * 1024),
            ],
            cwd=ctx.workspace.root,
            env=scrubbed_environment(ctx.workspace.root),
            time_limit=timeout,
            stdin=args.code.encode("utf-8", "surrogateescape"),
        )
        return {"exit_code": result.exit_code, "stdout": result.stdout, "stderr": result.stderr}
