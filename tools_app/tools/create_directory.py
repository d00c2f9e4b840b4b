from __future__ import annotations

import os
from typing import Any

from ..errors import ToolError
from ..registry import Tool, ToolArgs, ToolContext, offload, register
from ..workspace import Workspace, WorkspacePath


class CreateDirectoryArgs(ToolArgs):
    path: WorkspacePath
    parents: bool = True


def make_folder(workspace: Workspace, path: str, parents: bool) -> tuple[str, bool]:
    """Blocking: (its name, whether it was made), each folder made in its parent's descriptor."""
    try:
        fd = workspace.open_folder(path)
    except FileNotFoundError:
        pass
    else:
        try:
            return workspace.name_of(fd, path), False
        finally:
            os.close(fd)
    if parents:
        fd = workspace.open_folder(path, create=True)
        try:
            return workspace.name_of(fd, path), True
        finally:
            os.close(fd)
    folder, name = workspace.open_parent(path)
    try:
        os.mkdir(name, dir_fd=folder)
        return workspace.entry_name(folder, name), True
    finally:
        os.close(folder)


@register
class CreateDirectory(Tool):
    name = "create_directory"
    description = "Create a folder in the workspace (with its parents unless parents is false)."
    Args = CreateDirectoryArgs

    async def run(self, args: CreateDirectoryArgs, ctx: ToolContext) -> dict[str, Any]:
        try:
            path, created = await offload(make_folder, ctx.workspace, args.path, args.parents)
        except FileExistsError:
            raise ToolError("already_exists", f"{args.path!r} exists and is not a folder") from None
        except FileNotFoundError:
            raise ToolError("not_found", f"the parent of {args.path!r} does not exist") from None
        except NotADirectoryError:
            raise ToolError("not_a_directory", f"a parent of {args.path!r} is a file") from None
        return {"path": path, "created": created}
