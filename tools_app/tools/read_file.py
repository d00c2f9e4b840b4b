from __future__ import annotations

import codecs
import os
from typing import Any

import aiofiles
from django.conf import settings
from pydantic import Field

from ..errors import ToolError
from ..fingerprint import CacheBasis, file_basis
from ..registry import Tool, ToolArgs, ToolContext, offload, register
from ..workspace import Workspace, WorkspacePath

# The most one call returns; a larger file answers ``truncated`` (read the rest with offset).
MAX_READ_BYTES = 10 * 1024 * 1024


class ReadFileArgs(ToolArgs):
    path: WorkspacePath
    encoding: str = "utf-8"
    offset: int = Field(0, ge=0)
    length: int | None = Field(None, ge=0, le=MAX_READ_BYTES)


@register
class ReadFile(Tool):
    name = "read_file"
    description = (
        f"Read a text file of the workspace (a byte range with offset and length; at most "
        f"{MAX_READ_BYTES} bytes per call). A file that is not valid text answers binary_file."
    )
    Args = ReadFileArgs
    read_only = True
    cacheable = True

    def answers_are_cached(self) -> bool:
        # No answer is ever as large as the minimum size worth caching: nothing is cached.
        return (
            super().answers_are_cached()
            and settings.CLAWSITE_CACHE_READ_FILE_MIN_BYTES <= MAX_READ_BYTES
        )

    def cache_basis(self, args: ReadFileArgs, workspace: Workspace) -> CacheBasis | None:
        path = workspace.resolve(args.path)
        st = os.stat(path)
        # A read from the page cache is as fast as a Redis hit of the same size, or faster
        # (scripts/measure_cache.py): only answers from this size on are worth caching.
        answer = min(
            max(st.st_size - args.offset, 0),
            args.length if args.length is not None else MAX_READ_BYTES,
        )
        if answer < settings.CLAWSITE_CACHE_READ_FILE_MIN_BYTES:
            return None
        return file_basis(workspace, path, {**args.model_dump(), "path": str(path)}, st)

    async def run(self, args: ReadFileArgs, ctx: ToolContext) -> dict[str, Any]:
        wanted = args.length if args.length is not None else MAX_READ_BYTES
        try:
            fd = await offload(ctx.workspace.open, args.path, os.O_RDONLY | os.O_NONBLOCK)
            async with aiofiles.open(fd, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                await handle.seek(args.offset)
                data = await handle.read(wanted)
        except FileNotFoundError:
            raise ToolError("not_found", f"{args.path!r} does not exist") from None
        except IsADirectoryError:
            raise ToolError("is_a_directory", f"{args.path!r} is a directory") from None
        except PermissionError:
            raise ToolError("permission_denied", f"{args.path!r} cannot be read") from None
        truncated = args.offset + len(data) < size
        try:
            # A cut at the end of a range may split a character: keep the whole ones.
            decoder = codecs.getincrementaldecoder(args.encoding)()
            content = decoder.decode(data, final=not truncated)
        except LookupError:
            raise ToolError("invalid_encoding", f"unknown encoding {args.encoding!r}") from None
        except UnicodeDecodeError:
            raise ToolError(
                "binary_file", f"{args.path!r} is not valid {args.encoding}; use hash_file"
            ) from None
        return {"content": content, "size": size, "encoding": args.encoding, "truncated": truncated}
