from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ToolError
from ..fingerprint import CacheBasis, tree_basis
from ..registry import Tool, ToolArgs, ToolContext, offload, register
from ..tree import relative_name, walk_tree
from ..workspace import Workspace, WorkspacePath

MAX_ENTRIES = 100_000


class ListDirectoryArgs(ToolArgs):
    path: WorkspacePath = "."
    recursive: bool = False
    include_hidden: bool = False


def entry_type(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "directory"
    return "file" if stat.S_ISREG(mode) else "other"


def iso_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def list_entries(
    workspace: Workspace, folder: str, recursive: bool, hidden: bool
) -> list[dict[str, Any]]:
    """Blocking: the entries under ``folder``, sorted by path. Symlinked folders are not
    followed; the walk starts from the folder opened beneath the workspace."""
    entries: list[dict[str, Any]] = []
    top = workspace.open_folder(folder)
    try:
        base = workspace.name_of(top, folder)
        root = workspace.root / base
        for path, st in walk_tree(root, recursive, hidden, top):
            entries.append(_entry(root, base, path, st))
            if len(entries) > MAX_ENTRIES:
                raise ToolError("too_many_entries", f"more than {MAX_ENTRIES} entries")
    finally:
        os.close(top)
    entries.sort(key=lambda item: item["path"])
    return entries


def _entry(root: Path, base: str, path: str, st: os.stat_result) -> dict[str, Any]:
    kind = entry_type(st.st_mode)
    relative = relative_name(root, path)
    return {
        "name": relative.rsplit("/", 1)[-1],
        "path": relative if base == "." else f"{base}/{relative}",
        "type": kind,
        "size": st.st_size if kind == "file" else None,
        "modified": iso_time(st.st_mtime),
    }


@register
class ListDirectory(Tool):
    name = "list_directory"
    description = "List a folder of the workspace (recursively if asked; symlinks not followed)."
    Args = ListDirectoryArgs
    read_only = True
    cacheable = True

    def cache_basis(self, args: ListDirectoryArgs, workspace: Workspace) -> CacheBasis | None:
        path = workspace.resolve(args.path)
        if not os.path.isdir(path):
            return None
        normalized = {**args.model_dump(), "path": str(path)}
        return tree_basis(workspace, path, normalized, args.recursive, args.include_hidden)

    async def run(self, args: ListDirectoryArgs, ctx: ToolContext) -> dict[str, Any]:
        try:
            entries = await offload(
                list_entries, ctx.workspace, args.path, args.recursive, args.include_hidden
            )
        except FileNotFoundError:
            raise ToolError("not_found", f"{args.path!r} does not exist") from None
        except NotADirectoryError:
            raise ToolError("not_a_directory", f"{args.path!r} is not a folder") from None
        except PermissionError:
            raise ToolError("permission_denied", f"{args.path!r} cannot be listed") from None
        return {"entries": entries}
