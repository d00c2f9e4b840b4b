from __future__ import annotations

import hashlib
import os
from typing import Any

from ..errors import ToolError
from ..fingerprint import CacheBasis, file_basis
from ..registry import Tool, ToolArgs, ToolContext, offload, register
from ..workspace import Workspace, WorkspacePath
from .hash_file import hash_stream
from .list_directory import entry_type, iso_time


class FileInfoArgs(ToolArgs):
    path: WorkspacePath
    sha256: bool = False


def _stat(workspace: Workspace, path: str) -> tuple[str, os.stat_result]:
    """Its name (symlinks resolved) and stat, through a descriptor opened beneath the workspace."""
    fd = workspace.open(path, os.O_PATH)
    try:
        return workspace.name_of(fd, path), os.fstat(fd)
    finally:
        os.close(fd)


@register
class FileInfo(Tool):
    name = "file_info"
    description = (
        "Type, size and modification time of a workspace path (and a file's sha256 if asked)."
    )
    Args = FileInfoArgs
    read_only = True
    cacheable = True

    def cache_basis(self, args: FileInfoArgs, workspace: Workspace) -> CacheBasis | None:
        path = workspace.resolve(args.path)
        return file_basis(workspace, path, {**args.model_dump(), "path": str(path)})

    async def run(self, args: FileInfoArgs, ctx: ToolContext) -> dict[str, Any]:
        try:
            name, st = await offload(_stat, ctx.workspace, args.path)
        except FileNotFoundError:
            raise ToolError("not_found", f"{args.path!r} does not exist") from None
        kind = entry_type(st.st_mode)
        info: dict[str, Any] = {
            "path": name,
            "type": kind,
            "size": st.st_size,
            "modified": iso_time(st.st_mtime),
        }
        if args.sha256 and kind == "file":
            info["sha256"] = (await hash_stream(args.path, hashlib.sha256(), ctx))[0]
        return info
