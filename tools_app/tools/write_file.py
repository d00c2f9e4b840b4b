from __future__ import annotations

import os
import tempfile
from typing import Any

import aiofiles
import aiofiles.os

from ..errors import ToolError
from ..registry import Tool, ToolArgs, ToolContext, offload, register
from ..workspace import WorkspacePath


class WriteFileArgs(ToolArgs):
    path: WorkspacePath
    content: str
    overwrite: bool = True
    append: bool = False


def _temporary_beside(path: str) -> str:
    fd, temporary = tempfile.mkstemp(prefix=".clawsite-", dir=os.path.dirname(path))
    os.close(fd)
    return temporary


@register
class WriteFile(Tool):
    name = "write_file"
    description = "Write (or append to) a text file of the workspace; parent folders are created."
    Args = WriteFileArgs

    async def run(self, args: WriteFileArgs, ctx: ToolContext) -> dict[str, Any]:
        path = await offload(ctx.workspace.resolve, args.path)
        if path == ctx.workspace.root or await aiofiles.os.path.isdir(path):
            raise ToolError("is_a_directory", f"{args.path!r} is a directory")
        exists = await aiofiles.os.path.exists(path)
        if exists and not args.overwrite and not args.append:
            raise ToolError("already_exists", f"{args.path!r} exists and overwrite is false")
        try:
            await aiofiles.os.makedirs(path.parent, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ToolError("not_a_directory", f"a parent of {args.path!r} is a file") from None
        data = args.content.encode()
        if args.append:
            async with aiofiles.open(path, "ab") as handle:
                await handle.write(data)
        else:
            # Readers never see half a file: write beside it, then rename over it.
            temporary = await offload(_temporary_beside, str(path))
            try:
                async with aiofiles.open(temporary, "wb") as handle:
                    await handle.write(data)
                await aiofiles.os.replace(temporary, path)
            except BaseException:
                await offload(lambda: os.path.exists(temporary) and os.unlink(temporary))
                raise
        size = (await aiofiles.os.stat(path)).st_size
        return {"path": ctx.workspace.relative(path), "size": size}
