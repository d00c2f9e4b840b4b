"""run_command: an allowed program with an argv list, never a shell.

No shell ever sees the arguments, so ``;``, ``&&``, ``|``, ``$()``, backticks and ``>`` are
plain bytes handed to the program. The program is named by its bare name, must be on
``CLAWSITE_COMMAND_ALLOWLIST``, and is found on a fixed PATH, not the worker's. An allowed
program may still run others (``find -exec``, ``git -c alias.x='!sh'``): it runs in the sandbox
(tools_app.sandbox), which is what confines it, not the allow-list.
"""

from __future__ import annotations

import math
import shutil
from typing import Any

from django.conf import settings
from pydantic import Field, field_validator

from .. import sandbox
from ..errors import ToolError
from ..process import SAFE_PATH
from ..registry import Tool, ToolArgs, ToolContext, offload, register
from ..workspace import WorkspacePath


def program_allowed(name: str) -> bool:
    return name in settings.CLAWSITE_COMMAND_ALLOWLIST


class RunCommandArgs(ToolArgs):
    argv: list[str] = Field(min_length=1, max_length=1000)
    timeout: float = Field(30.0, gt=0, le=3600)
    cwd: WorkspacePath = "."

    @field_validator("argv")
    @classmethod
    def allowed_program(cls, argv: list[str]) -> list[str]:
        if any("\x00" in arg for arg in argv):
            raise ValueError("arguments must not contain NUL bytes")
        program = argv[0]
        if not program or "/" in program:
            raise ValueError("argv[0] must be a bare program name, not a path")
        if not program_allowed(program):
            raise ValueError(f"{program!r} is not on the command allow-list")
        return argv


@register
class RunCommand(Tool):
    name = "run_command"
    description = (
        "Run an allowed program (CLAWSITE_COMMAND_ALLOWLIST) with an argv list, without a shell, "
        "in a folder of the workspace; output capped, the process group killed on timeout."
    )
    Args = RunCommandArgs

    def is_enabled(self, user: Any = None) -> bool:
        return self.disabled_reason(user) is None

    def disabled_reason(self, user: Any = None) -> str | None:
        if not settings.CLAWSITE_COMMAND_ALLOWLIST:
            return "the tool 'run_command' is not enabled (CLAWSITE_COMMAND_ALLOWLIST is empty)"
        return sandbox.unavailable_reason()

    async def run(self, args: RunCommandArgs, ctx: ToolContext) -> dict[str, Any]:
        program = args.argv[0]
        if not program_allowed(program):  # the allow-list may have changed since submission
            raise ToolError("command_not_allowed", f"{program!r} is not on the command allow-list")
        executable = shutil.which(program, path=SAFE_PATH)
        if executable is None:
            raise ToolError("command_not_found", f"{program!r} is not installed")
        cwd = await offload(ctx.workspace.resolve, args.cwd)
        timeout = ctx.limit(args.timeout) or args.timeout
        try:
            result = await sandbox.run_confined(
                [executable, *args.argv[1:]],
                workspace=ctx.workspace.root,
                cwd=cwd,
                network=settings.CLAWSITE_COMMAND_NETWORK,
                limits=sandbox.limits(
                    cpu_seconds=math.ceil(timeout) + 1,
                    memory_mb=settings.CLAWSITE_COMMAND_MEMORY_MB,
                    file_mb=settings.CLAWSITE_COMMAND_MAX_FILE_MB,
                ),
                time_limit=timeout,
            )
        except (FileNotFoundError, NotADirectoryError):
            raise ToolError("not_found", f"the folder {args.cwd!r} does not exist") from None
        return {
            "exit_code": result.exit_code,
            "stdout": result.stdout,
            "stderr": result.stderr,
            "truncated": result.truncated,
        }
