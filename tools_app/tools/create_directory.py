from __future__ import annotations

from typing import Any

import aiofiles.os

from ..errors import ToolError
from ..registry import Tool, ToolArgs, ToolContext, offload, register
from ..workspace import WorkspacePath


class CreateDirectoryArgs(ToolArgs):
    path: WorkspacePath
    parents: bool = True


@register
class CreateDirectory(Tool):
    name = "create_directory"
    description = "Create a folder in the workspace (with its parents unless parents is false)."
    Args = CreateDirectoryArgs

    async def run(self, args: CreateDirectoryArgs, ctx: ToolContext) -> dict[str, Any]:
        path = await offload(ctx.workspace.resolve, args.path)
        if await aiofiles.os.path.isdir(path):
            return {"path": ctx.workspace.relative(path), "created": False}
        try:
            if args.parents:
                await aiofiles.os.makedirs(path, exist_ok=True)
            else:
                await aiofiles.os.mkdir(path)
        except FileExistsError:
            raise ToolError("already_exists", f"{args.path!r} exists and is not a folder") from None
        except FileNotFoundError:
            raise ToolError("not_found", f"the parent of {args.path!r} does not exist") from None
        except NotADirectoryError:
            raise ToolError("not_a_directory", f"a parent of {args.path!r} is a file") from None
        return {"path": ctx.workspace.relative(path), "created": True}
