"""Each user's workspace, and the one check that keeps tools inside it.

Paths are checked twice: lexically when a task is submitted (absolute paths, ``..`` escapes and
NUL bytes are refused as ``invalid_args`` and change nothing), and on every call, cache hits
included, by resolving the path (symlinks too) and testing containment with path semantics: a
sibling folder whose name merely starts with the workspace's name is outside it.
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path
from typing import Annotated, Any

from django.conf import settings
from pydantic import AfterValidator

from .errors import ToolError

SAFE_USERNAME = re.compile(r"^[A-Za-z0-9_-]{1,150}$")
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
        if not SAFE_USERNAME.match(username):
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
