from __future__ import annotations

import errno
import os
import posixpath
import shutil
import stat
from typing import Any

from pydantic import field_validator

from ..errors import ToolError
from ..registry import Tool, ToolArgs, ToolContext, offload, register
from ..workspace import Workspace, WorkspacePath


class DeletePathArgs(ToolArgs):
    path: WorkspacePath
    recursive: bool = False

    @field_validator("path")
    @classmethod
    def not_the_workspace(cls, path: str) -> str:
        if posixpath.normpath(path or ".") == ".":
            raise ValueError("the workspace itself cannot be deleted")
        return path


def delete_entry(workspace: Workspace, path: str, recursive: bool) -> str:
    """Blocking. Deletes the entry itself, in its open parent folder: a symlink is removed,
    never what it points to."""
    try:
        folder, name = workspace.open_parent(path)
    except FileNotFoundError:
        raise ToolError("not_found", f"{path!r} does not exist") from None
    except NotADirectoryError:
        raise ToolError("not_found", f"a parent of {path!r} is a file") from None
    try:
        shown = workspace.entry_name(folder, name)
        mode = os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode
        if stat.S_ISDIR(mode):
            if recursive:
                # rmtree does not follow symlinks inside the tree (fd-based on Linux).
                shutil.rmtree(name, dir_fd=folder)
            else:
                os.rmdir(name, dir_fd=folder)
        else:
            os.unlink(name, dir_fd=folder)
    except FileNotFoundError:
        raise ToolError("not_found", f"{path!r} does not exist") from None
    except OSError as exc:
        if not recursive and exc.errno == errno.ENOTEMPTY:
            raise ToolError("not_empty", f"{path!r} is a non-empty folder; set recursive") from None
        raise ToolError("delete_failed", f"{path!r}: {exc.strerror}") from None
    finally:
        os.close(folder)
    return shown


@register
class DeletePath(Tool):
    name = "delete_path"
    destructive = True
    description = "Delete a file, symlink or folder of the workspace (a non-empty folder only with recursive)."
    Args = DeletePathArgs

    async def run(self, args: DeletePathArgs, ctx: ToolContext) -> dict[str, Any]:
        deleted = await offload(delete_entry, ctx.workspace, args.path, args.recursive)
        return {"path": deleted, "deleted": True}
