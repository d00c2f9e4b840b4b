"""What a cacheable answer depends on, found without running the tool.

A cached answer is keyed by the state of every file and folder it depends on: size, mtime_ns,
ctime_ns, inode, device and mode. A write (through ClawSite or behind its back) changes at least
ctime, and a folder's mtime changes when an entry is added, removed or renamed, so a changed
input gives a different key and the old answer is never served. Timestamps are coarse (a tick of
a few ms), so ``newest_ns`` lets the cache refuse answers that depend on something changed too
recently for its timestamp to be trusted (as git does with "racily clean" files).

Blocking (stat, scandir): run through ``offload``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .workspace import Workspace


@dataclass(frozen=True)
class CacheBasis:
    """The normalized question and the state of its inputs.

    ``subject`` ("<username>/<path in the workspace>") is what ``invalidate(pattern=...)`` matches.
    """

    subject: str
    normalized: dict[str, Any]
    state: str
    newest_ns: int


class StateDigest:
    """A running digest of stat results, and the newest timestamp among them."""

    def __init__(self) -> None:
        self._hash = hashlib.blake2b(digest_size=20)
        self.newest_ns = 0
        self.count = 0

    def add(self, name: str, st: os.stat_result) -> None:
        self._hash.update(
            f"{name}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\0"
            f"{st.st_dev}\0{st.st_mode}\n".encode("utf-8", "surrogateescape")
        )
        self.newest_ns = max(self.newest_ns, st.st_mtime_ns, st.st_ctime_ns)
        self.count += 1

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def walk_tree(
    root: Path, recursive: bool, include_hidden: bool
) -> Iterator[tuple[os.DirEntry[str], os.stat_result]]:
    """Every entry under ``root`` with its lstat, folders first; symlinked folders are not
    followed (their targets may lie outside the workspace). Entries vanishing meanwhile are
    skipped. The one walk that listings, searches and their fingerprints share."""
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            scan = os.scandir(folder)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            if folder == root:
                raise
            continue
        with scan:
            for entry in scan:
                if not include_hidden and entry.name.startswith("."):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                yield entry, st
                if recursive and entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))


def relative_name(root: Path, entry_path: str) -> str:
    """The name of an entry that ``walk_tree(root)`` yielded, relative to ``root``. Plain string
    work (pathlib's relative_to dominated a 2,000-file search); it names entries found under
    ``root``, it never decides whether a path is inside: Workspace.resolve does that."""
    return entry_path[len(str(root)) + 1 :]


def subject_of(workspace: Workspace, path: Path) -> str:
    return f"{workspace.root.name}/{workspace.relative(path)}"


def file_basis(
    workspace: Workspace,
    resolved: Path,
    normalized: dict[str, Any],
    st: os.stat_result | None = None,
) -> CacheBasis:
    """The basis of an answer that depends on one file or folder entry (not its contents)."""
    digest = StateDigest()
    digest.add(".", st if st is not None else os.stat(resolved))
    return CacheBasis(
        subject_of(workspace, resolved), normalized, digest.hexdigest(), digest.newest_ns
    )


def tree_basis(
    workspace: Workspace,
    resolved: Path,
    normalized: dict[str, Any],
    recursive: bool,
    include_hidden: bool,
) -> CacheBasis:
    """The basis of an answer that depends on a folder and everything it covers."""
    digest = StateDigest()
    digest.add(".", os.stat(resolved))
    for entry, st in walk_tree(resolved, recursive, include_hidden):
        digest.add(entry.path, st)
    return CacheBasis(
        subject_of(workspace, resolved), normalized, digest.hexdigest(), digest.newest_ns
    )
