"""The directory walk that listings, searches and their cache fingerprints share.

Blocking (listdir, lstat): run through ``offload``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from stat import S_ISDIR

_FOLDER = os.O_RDONLY | os.O_DIRECTORY


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
