from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ToolError
from ..registry import Tool, ToolArgs, ToolContext, offload, register
from ..workspace import Workspace, WorkspacePath

MAX_ENTRIES = 100_000


class ListDirectoryArgs(ToolArgs):
    path: WorkspacePath = "."
    recursive: bool = False
    include_hidden: bool = False


def _entry_type(entry: os.DirEntry[str]) -> str:
    if entry.is_symlink():
        return "symlink"
    if entry.is_dir(follow_symlinks=False):
        return "directory"
    return "file" if entry.is_file(follow_symlinks=False) else "other"


def list_entries(workspace: Workspace, root: Path, recursive: bool, hidden: bool) -> list[dict[str, Any]]:
    """Blocking: the entries under ``root``, sorted by path. Symlinked folders are not followed."""
    entries: list[dict[str, Any]] = []
    pending = [root]
    while pending:
        folder = pending.pop()
        with os.scandir(folder) as scan:
            for entry in scan:
                if not hidden and entry.name.startswith("."):
                    continue
                kind = _entry_type(entry)
                stat = entry.stat(follow_symlinks=False)
                entries.append(
                    {
                        "name": entry.name,
                        "path": workspace.relative(Path(entry.path)),
                        "type": kind,
                        "size": stat.st_size if kind == "file" else None,
                        "modified": datetime.fromtimestamp(stat.st_mtime, UTC)
                        .isoformat()
                        .replace("+00:00", "Z"),
                    }
                )
                if len(entries) > MAX_ENTRIES:
                    raise ToolError("too_many_entries", f"more than {MAX_ENTRIES} entries")
                if recursive and kind == "directory":
                    pending.append(Path(entry.path))
    entries.sort(key=lambda item: item["path"])
    return entries


@register
class ListDirectory(Tool):
    name = "list_directory"
    description = "List a folder of the workspace (recursively if asked)."
    Args = ListDirectoryArgs
    read_only = True
    cacheable = True

    async def run(self, args: ListDirectoryArgs, ctx: ToolContext) -> dict[str, Any]:
        path = await offload(ctx.workspace.resolve, args.path)
        try:
            entries = await offload(
                list_entries, ctx.workspace, path, args.recursive, args.include_hidden
            )
        except FileNotFoundError:
            raise ToolError("not_found", f"{args.path!r} does not exist") from None
        except NotADirectoryError:
            raise ToolError("not_a_directory", f"{args.path!r} is not a folder") from None
        return {"entries": entries}
