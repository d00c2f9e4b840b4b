from __future__ import annotations

from typing import Any

import aiofiles
import aiofiles.os
from pydantic import Field

from ..errors import ToolError
from ..registry import Tool, ToolArgs, ToolContext, offload, register
from ..workspace import WorkspacePath

MAX_READ_BYTES = 10 * 1024 * 1024


class ReadFileArgs(ToolArgs):
    path: WorkspacePath
    encoding: str = "utf-8"
    offset: int = Field(0, ge=0)
    length: int | None = Field(None, ge=0, le=MAX_READ_BYTES)


@register
class ReadFile(Tool):
    name = "read_file"
    description = "Read a text file of the workspace (a byte range with offset and length)."
    Args = ReadFileArgs
    read_only = True
    cacheable = True

    async def run(self, args: ReadFileArgs, ctx: ToolContext) -> dict[str, Any]:
        path = await offload(ctx.workspace.resolve, args.path)
        try:
            size = (await aiofiles.os.stat(path)).st_size
            if await aiofiles.os.path.isdir(path):
                raise ToolError("is_a_directory", f"{args.path!r} is a directory")
            wanted = args.length if args.length is not None else MAX_READ_BYTES
            async with aiofiles.open(path, "rb") as handle:
                await handle.seek(args.offset)
                data = await handle.read(wanted)
        except FileNotFoundError:
            raise ToolError("not_found", f"{args.path!r} does not exist") from None
        except PermissionError:
            raise ToolError("permission_denied", f"{args.path!r} cannot be read") from None
        try:
            content = data.decode(args.encoding)
        except LookupError:
            raise ToolError("invalid_encoding", f"unknown encoding {args.encoding!r}") from None
        except UnicodeDecodeError:
            raise ToolError(
                "binary_file", f"{args.path!r} is not valid {args.encoding}; use hash_file"
            ) from None
        return {
            "content": content,
            "size": size,
            "encoding": args.encoding,
            "truncated": args.offset + len(data) < size,
        }
