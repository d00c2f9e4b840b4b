"""The one way a task's tool runs: look it up, check it is enabled, validate, run in the workspace.

The worker calls ``run_tool``; the tool cache (when a tool is cacheable) sits here too, so every
call, hit or miss, passes the same workspace check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from . import cache
from .errors import ToolError
from .registry import ProgressCallback, ToolContext, get_tool, offload
from .workspace import Workspace


@dataclass
class ToolOwner:
    """The task's owner as a running tool sees it."""

    id: int
    username: str
    is_staff: bool = False

    def get_username(self) -> str:
        return self.username


@dataclass
class ToolOutcome:
    result: dict[str, Any]
    cache_hit: bool = False


async def run_tool(
    name: str,
    raw_args: dict[str, Any],
    owner: ToolOwner,
    *,
    timeout: float | None = None,
    report_progress: ProgressCallback | None = None,
) -> ToolOutcome:
    tool = get_tool(name)
    if tool is None:
        raise ToolError("unknown_tool", f"no tool named {name!r}")
    if not tool.is_enabled(owner):
        raise ToolError("tool_disabled", f"the tool {name!r} is not enabled")
    try:
        args = tool.parse_args(raw_args)
    except ValidationError as exc:
        raise ToolError("invalid_args", str(exc)) from None
    workspace = Workspace.for_user(owner)
    await offload(workspace.ensure_exists)
    ctx = ToolContext(workspace=workspace, user=owner, timeout=timeout)
    if report_progress is not None:
        ctx.report_progress = report_progress
    if not tool.cacheable:
        return ToolOutcome(result=await tool.run(args, ctx))
    # The lookup resolves and checks the path on every call: a hit is refused like a run would be.
    found = await offload(cache.lookup, tool, args, workspace)
    if found.result is not None:
        return ToolOutcome(result=found.result, cache_hit=True)
    result = await tool.run(args, ctx)
    if found.key is not None:
        await offload(cache.store, tool, found.key, result)
    return ToolOutcome(result=result)
