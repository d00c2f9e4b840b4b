"""What a cacheable answer depends on, found without running the tool.

A cached answer is keyed by the state of every file and folder it depends on: each one's path and
the size, mtime_ns, ctime_ns, inode, device and mode of its lstat (``state_of``). A write (through
ClawSite or behind its back) changes at least ctime, and a folder's mtime changes when an entry
is added, removed or renamed, so a changed input gives a different key and the old answer is
never served. Timestamps are coarse (a tick of a few ms), so ``newest_ns`` lets the cache refuse
answers that depend on something changed too recently for its timestamp to be trusted (as git
does with "racily clean" files).

Every entry is stat'ed on every lookup, hits included: a rewrite shows only in the file's own
ctime, and nothing cheaper tells of another process's write. So a hit costs a walk of the tree,
and the walk and the digest keep Python's work per entry to the lstat and little else.

Blocking (stat, listdir): run through ``offload``.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from stat import S_ISDIR
from typing import Any

from .workspace import Workspace

_FOLDER = os.O_RDONLY | os.O_DIRECTORY


@dataclass(frozen=True)
class CacheBasis:
    """The normalized question and the state of its inputs.

    ``subject`` ("<username>/<path in the workspace>") is what ``invalidate(pattern=...)`` matches.
    """

    subject: str
    normalized: dict[str, Any]
    state: str
    newest_ns: int


# size, mtime_ns, ctime_ns, inode, device, mode, packed at a fixed width: no separators needed,
# and no int-to-text conversion of nanosecond timestamps (f-strings per entry cost more than
# the hashing).
# Timestamps are taken modulo 2**64 so that any date fits: two states collide only if every
# timestamp differs by a multiple of 584 years and all else is equal, while any change to a
# file sets its ctime to the current time.
_STAT_FIELDS = struct.Struct("<qQQQQq")
_U64 = 2**64 - 1
_mtime_ns = attrgetter("st_mtime_ns")
_ctime_ns = attrgetter("st_ctime_ns")


def _packed(stats: list[os.stat_result]) -> list[bytes]:
    return [
        _STAT_FIELDS.pack(
            st.st_size,
            st.st_mtime_ns & _U64,
            st.st_ctime_ns & _U64,
            st.st_ino,
            st.st_dev,
            st.st_mode,
        )
        for st in stats
    ]


def state_of(
    top: os.stat_result, folders: Iterable[tuple[str, list[str], list[os.stat_result]]]
) -> tuple[str, int]:
    """The digest of a file or folder (``top``) and of the folders under it, as
    ``walk_folders`` yields them, and the newest timestamp among them all.

    Two streams, hashed in one go (per-entry hash updates cost more than the hashing): the packed
    fields of ``top``, then per folder its entry count and its entries' fields; and per folder
    its path, then its entries' names, all joined by NUL (which no path or name contains). The
    counts say which names belong to which folder, so any change to a name, to a folder's
    entries or to a field gives a different digest.
    """
    fields = _packed([top])
    names = []
    newest_ns = max(top.st_mtime_ns, top.st_ctime_ns)
    for folder, folder_names, stats in folders:
        fields.append(len(stats).to_bytes(8, "little"))
        fields += _packed(stats)
        names.append(folder)
        names += folder_names
        if stats:
            newest_ns = max(newest_ns, max(map(_mtime_ns, stats)), max(map(_ctime_ns, stats)))
    packed = b"".join(fields)
    digest = hashlib.blake2b(len(packed).to_bytes(8, "little"), digest_size=20)
    digest.update(packed)
    digest.update("\0".join(names).encode("utf-8", "surrogateescape"))
    return digest.hexdigest(), newest_ns


def walk_folders(
    root: Path, recursive: bool, include_hidden: bool, top_fd: int | None = None
) -> Iterator[tuple[str, list[str], list[os.stat_result]]]:
    """Each folder under ``root`` (``root`` first) as its path, its entries' names and their
    lstats. Symlinked folders are not followed (their targets may lie outside the workspace);
    entries vanishing meanwhile are skipped. The one walk that listings, searches and their
    fingerprints share: each folder is opened once and its entries stat'ed by bare name through
    the descriptor (``fstatat``: no path lookup, no DirEntry, no Path).

    Each subfolder is opened by its bare name in its parent's descriptor with ``O_NOFOLLOW``, so
    a folder swapped for a symlink meanwhile is not entered, wherever it is on the way.
    ``top_fd``: ``root`` already opened (beneath the workspace); ``root`` then only names it.
    Only the folders from ``root`` down to the current one are open at a time."""
    fd = os.dup(top_fd) if top_fd is not None else os.open(root, _FOLDER | os.O_NOFOLLOW)
    # Depth first; each level: its path, its descriptor, the subfolders still to visit.
    levels: list[tuple[str, int, Iterator[str]]] = []
    folder = str(root)
    try:
        while True:
            names, stats = _list_folder(fd, include_hidden)
            yield folder, names, stats
            subfolders = [n for n, st in zip(names, stats, strict=True) if S_ISDIR(st.st_mode)]
            levels.append((folder, fd, iter(subfolders if recursive else [])))
            fd = -1
            while levels and fd < 0:
                parent, parent_fd, rest = levels[-1]
                name = next(rest, None)
                if name is None:
                    os.close(levels.pop()[1])
                    continue
                try:
                    fd = os.open(name, _FOLDER | os.O_NOFOLLOW, dir_fd=parent_fd)
                except OSError:  # gone, no longer a folder, unreadable, or now a symlink
                    continue
                folder = f"{parent}/{name}"
            if fd < 0:
                return
    finally:
        if fd >= 0:
            os.close(fd)
        for _, level_fd, _ in levels:
            os.close(level_fd)


def _list_folder(fd: int, include_hidden: bool) -> tuple[list[str], list[os.stat_result]]:
    """The names in the open folder ``fd`` and their lstats, in one comprehension (the common
    case); entry by entry only if one vanished meanwhile."""
    names = os.listdir(fd)
    if not include_hidden:
        names = [name for name in names if not name.startswith(".")]
    try:
        return names, [os.lstat(name, dir_fd=fd) for name in names]
    except FileNotFoundError:
        found = []
        for name in names:
            try:
                found.append((name, os.lstat(name, dir_fd=fd)))
            except FileNotFoundError:
                continue
        return [name for name, _ in found], [st for _, st in found]


def walk_tree(
    root: Path, recursive: bool, include_hidden: bool, top_fd: int | None = None
) -> Iterator[tuple[str, os.stat_result]]:
    """The path of every entry under ``root`` with its lstat, folders before their entries:
    ``walk_folders`` entry by entry."""
    for folder, names, stats in walk_folders(root, recursive, include_hidden, top_fd):
        for name, st in zip(names, stats, strict=True):
            yield f"{folder}/{name}", st


def relative_name(root: Path, entry_path: str) -> str:
    """The path of an entry that ``walk_tree(root)`` yielded, relative to ``root``. Plain string
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
    state, newest_ns = state_of(st if st is not None else os.stat(resolved), ())
    return CacheBasis(subject_of(workspace, resolved), normalized, state, newest_ns)


def tree_basis(
    workspace: Workspace,
    resolved: Path,
    normalized: dict[str, Any],
    recursive: bool,
    include_hidden: bool,
) -> CacheBasis:
    """The basis of an answer that depends on a folder and everything it covers."""
    folders = walk_folders(resolved, recursive, include_hidden)
    state, newest_ns = state_of(os.stat(resolved), folders)
    return CacheBasis(subject_of(workspace, resolved), normalized, state, newest_ns)
