from __future__ import annotations

import errno
import os
import posixpath
import secrets
import stat
from typing import Any

import aiofiles

from ..errors import ToolError
from ..registry import Tool, ToolArgs, ToolContext, offload, register
from ..workspace import Workspace, WorkspacePath

FILE_MODE = 0o666  # less the process's umask, as for any new file


class WriteFileArgs(ToolArgs):
    path: WorkspacePath
    content: str
    overwrite: bool = True
    append: bool = False


class _Target:
    """Where one write goes: the open parent folder, the entry's name, and the descriptor written
    to (the file itself when appending, else a temporary file beside it that replaces it)."""

    def __init__(self, workspace: Workspace, args: WriteFileArgs) -> None:
        """Blocking. Makes missing parent folders (each beneath the workspace)."""
        try:
            self.folder, self.name = workspace.open_parent(args.path, create=True)
        except (FileExistsError, NotADirectoryError):
            raise ToolError("not_a_directory", f"a parent of {args.path!r} is a file") from None
        self.temporary = ""
        try:
            found = self._lstat()
            if found is not None and stat.S_ISLNK(found.st_mode):
                self._follow(workspace, args.path)
            self.shown = workspace.entry_name(self.folder, self.name)
            self.fd = self._open(args)
        except BaseException:
            os.close(self.folder)
            raise

    def _lstat(self) -> os.stat_result | None:
        try:
            return os.stat(self.name, dir_fd=self.folder, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def _follow(self, workspace: Workspace, path: str) -> None:
        """A symlink in the last place: write where it leads, if that is inside (its parent
        opened beneath the workspace again; a link found there again is refused, not followed)."""
        real = workspace.resolve(path)  # ToolError path_outside_workspace
        folder, self.name = workspace.open_parent(workspace.relative(real), create=True)
        os.close(self.folder)
        self.folder = folder
        found = self._lstat()
        if found is not None and stat.S_ISLNK(found.st_mode):
            raise ToolError("symlink_refused", f"{path!r} leads through changing symlinks")

    def _open(self, args: WriteFileArgs) -> int:
        existing = self._lstat()
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise ToolError("is_a_directory", f"{args.path!r} is a directory")
        if existing is not None and not args.overwrite and not args.append:
            raise ToolError("already_exists", f"{args.path!r} exists and overwrite is false")
        if args.append:
            # O_NOFOLLOW: a symlink in the last place is not written through (it may lead out).
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
            try:
                return os.open(self.name, flags, FILE_MODE, dir_fd=self.folder)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise ToolError("symlink_refused", f"{args.path!r} is a symlink") from None
                raise
        self.temporary = f".clawsite-{secrets.token_hex(8)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        return os.open(self.temporary, flags, FILE_MODE, dir_fd=self.folder)

    def finish(self) -> int:
        """Blocking: put the file in place (a rename within its folder: readers never see half
        a file; a symlink there is replaced, not followed) and return its size."""
        try:
            if self.temporary:
                os.replace(
                    self.temporary, self.name, src_dir_fd=self.folder, dst_dir_fd=self.folder
                )
            return os.stat(self.name, dir_fd=self.folder, follow_symlinks=False).st_size
        finally:
            os.close(self.folder)

    def discard(self) -> None:
        try:
            if self.temporary:
                os.unlink(self.temporary, dir_fd=self.folder)
        except FileNotFoundError:
            pass
        finally:
            os.close(self.folder)


@register
class WriteFile(Tool):
    name = "write_file"
    destructive = True
    description = "Write (or append to) a text file of the workspace; parent folders are created."
    Args = WriteFileArgs

    async def run(self, args: WriteFileArgs, ctx: ToolContext) -> dict[str, Any]:
        if posixpath.basename(args.path.rstrip("/")) in ("", ".", ".."):
            raise ToolError("is_a_directory", f"{args.path!r} is a directory")
        target = await offload(_Target, ctx.workspace, args)
        try:
            async with aiofiles.open(target.fd, "wb") as handle:
                await handle.write(args.content.encode())
        except BaseException:
            await offload(target.discard)
            raise
        size = await offload(target.finish)
        return {"path": target.shown, "size": size}
