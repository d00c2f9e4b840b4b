"""Each user's workspace, and the one check that keeps tools inside it.

Paths are checked twice: lexically when a task is submitted (absolute paths, ``..`` escapes and
NUL bytes are refused as ``invalid_args`` and change nothing), and on every call, cache hits
included. The file tools then open what they touch with ``open`` / ``open_folder``: relative to
a descriptor of the workspace, never leaving it (tools_app.beneath), so a folder swapped for a
symlink between a check and an open cannot lead them out. ``resolve`` (the real path, checked
with path semantics) names things (cache keys, answers) but is never opened by name.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
from pathlib import Path
from typing import Annotated, Any

from django.conf import settings
from pydantic import AfterValidator

from .beneath import FOLDER, OutsideError, open_beneath
from .errors import ToolError

# Matched whole (``fullmatch``): with ``match`` and ``$``, "alice\n" passed.
SAFE_USERNAME = re.compile(r"[A-Za-z0-9_-]{1,150}")
MAX_PATH_LENGTH = 4096
MAX_NAME_LENGTH = 255


def check_relative_path(path: str) -> str:
    """Refuse what is wrong before running; returns the path unchanged. Raises ValueError."""
    if "\x00" in path:
        raise ValueError("path must not contain NUL bytes")
    if len(path) > MAX_PATH_LENGTH:
        raise ValueError(f"path is longer than {MAX_PATH_LENGTH} characters")
    if path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
        raise ValueError("path must be relative to the workspace")
    if any(len(part) > MAX_NAME_LENGTH for part in path.split("/")):
        raise ValueError(f"a path component is longer than {MAX_NAME_LENGTH} characters")
    normalized = posixpath.normpath(path or ".")
    if normalized == ".." or normalized.startswith("../"):
        raise ValueError("path escapes the workspace")
    return path


WorkspacePath = Annotated[str, AfterValidator(check_relative_path)]


class Workspace:
    """A folder that a user's tools may touch, and nothing outside it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))

    @classmethod
    def for_user(cls, user: Any) -> Workspace:
        """``<CLAWSITE_WORKSPACE_ROOT>/<username>``. Only safe slugs name folders: a user created
        elsewhere (the admin allows ``.`` and ``@``) with another name gets no workspace."""
        username = user.get_username()
        if not SAFE_USERNAME.fullmatch(username):
            raise ToolError(
                "invalid_username", "Workspaces need usernames of letters, digits, '_' and '-'."
            )
        return cls(Path(settings.CLAWSITE_WORKSPACE_ROOT) / username)

    def ensure_exists(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def resolve(self, path: str) -> Path:
        """The real path of ``path`` inside the workspace. Blocking (realpath): offload it.

        Raises ToolError ``invalid_path`` or ``path_outside_workspace``.
        """
        try:
            check_relative_path(path)
        except ValueError as exc:
            raise ToolError("invalid_path", str(exc)) from None
        resolved = Path(os.path.realpath(self.root / path))
        if not resolved.is_relative_to(self.root):
            raise ToolError("path_outside_workspace", f"{path!r} leads outside the workspace")
        return resolved

    def relative(self, path: Path) -> str:
        """``path`` as the caller names it: relative to the workspace, with forward slashes."""
        relative = path.relative_to(self.root).as_posix()
        return relative or "."

    def _checked(self, path: str) -> str:
        try:
            return check_relative_path(path)
        except ValueError as exc:
            raise ToolError("invalid_path", str(exc)) from None

    def open(self, path: str, flags: int = os.O_RDONLY, mode: int = 0o666) -> int:
        """A descriptor of ``path`` opened beneath the workspace (the caller closes it).
        Blocking: offload it. Raises ToolError ``invalid_path`` / ``path_outside_workspace``,
        or OSError as ``os.open`` would."""
        self._checked(path)
        root = os.open(self.root, FOLDER)
        try:
            return open_beneath(root, path, flags, mode)
        except OutsideError:
            raise ToolError(
                "path_outside_workspace", f"{path!r} leads outside the workspace"
            ) from None
        finally:
            os.close(root)

    def open_folder(self, path: str, create: bool = False) -> int:
        """A descriptor of the folder ``path``; with ``create``, missing folders on the way are
        made, each with ``mkdir`` in its parent's descriptor (a bare name: never followed)."""
        try:
            return self.open(path, FOLDER)
        except FileNotFoundError:
            if not create:
                raise
        parts = [part for part in path.split("/") if part not in ("", ".")]
        fd = self.open(".", FOLDER)
        try:
            for index, name in enumerate(parts):
                try:
                    child = self.open("/".join(parts[: index + 1]), FOLDER)
                except FileNotFoundError:
                    with contextlib.suppress(FileExistsError):  # made meanwhile: fine
                        os.mkdir(name, dir_fd=fd)
                    child = self.open("/".join(parts[: index + 1]), FOLDER)
                os.close(fd)
                fd = child
            return fd
        except BaseException:
            os.close(fd)
            raise

    def open_parent(self, path: str, create: bool = False) -> tuple[int, str]:
        """The open folder that holds ``path``'s last component (the caller closes it), and that
        component's name: what writes, renames and deletes act on (``dir_fd=``), without
        following it if it is a link. A path that names no entry of a folder (``.``, ``..``,
        the workspace) is ToolError ``invalid_path``."""
        folder, name = posixpath.split(self._checked(path).rstrip("/"))
        if name in ("", ".", ".."):
            raise ToolError("invalid_path", f"{path!r} does not name an entry of a folder")
        return self.open_folder(folder or ".", create=create), name

    def name_of(self, fd: int, fallback: str) -> str:
        """What the caller calls the open file ``fd`` (relative, symlinks resolved), or
        ``fallback`` if it is no longer inside (moved meanwhile)."""
        try:
            real = Path(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            return posixpath.normpath(fallback or ".")
        return (
            self.relative(real)
            if real.is_relative_to(self.root)
            else posixpath.normpath(fallback or ".")
        )

    def entry_name(self, folder: int, name: str) -> str:
        """What the caller calls the entry ``name`` of the open folder ``folder``."""
        base = self.name_of(folder, ".")
        return name if base == "." else f"{base}/{name}"
