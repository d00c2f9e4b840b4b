"""The one way a task's tool runs: look it up, check it is enabled, validate, run in the workspace.

The worker calls ``run_tool``; the tool cache (when a tool is cacheable) sits here too, so every
call, hit or miss, passes the same workspace check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
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


# Each owner's workspace, resolved (realpath) and created once per process and root: doing both
# for every task made them the worker's hottest calls (the bench's profile). Every path a tool
# is given is still resolved and checked on each call.
_workspaces: dict[tuple[str, int, str], Workspace] = {}


async def _workspace(owner: ToolOwner) -> Workspace:
    key = (str(settings.CLAWSITE_WORKSPACE_ROOT), owner.id, owner.username)
    workspace = _workspaces.get(key)
    if workspace is None:
        workspace = await offload(_prepare_workspace, owner)
        _workspaces[key] = workspace
    return workspace


def _prepare_workspace(owner: ToolOwner) -> Workspace:
    workspace = Workspace.for_user(owner)
    workspace.ensure_exists()
    return workspace


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
    if reason := await offload(tool.disabled_reason, owner):
        raise ToolError("tool_disabled", reason)
    try:
        args = tool.parse_args(raw_args)
    except ValidationError as exc:
        raise ToolError("invalid_args", str(exc)) from None
    workspace = await _workspace(owner)
    ctx = ToolContext(workspace=workspace, user=owner, timeout=timeout)
    if report_progress is not None:
        ctx.report_progress = report_progress
    try:
        if not tool.cacheable:
            return ToolOutcome(result=await tool.run(args, ctx))
        # The lookup resolves and checks the path on every call: a hit is refused like a run.
        found = await offload(cache.lookup, tool, args, workspace)
        if found.result is not None:
            return ToolOutcome(result=found.result, cache_hit=True)
        result = await tool.run(args, ctx)
        if found.key is not None:
            await offload(cache.store, tool, found.key, result)
        return ToolOutcome(result=result)
    except OSError as exc:
        # What the tools do not name themselves (a symlink loop, a name too long for the file
        # system, a full disk) is still the caller's input meeting the disk, not a crash.
        raise ToolError("os_error", exc.strerror or str(exc)) from None
