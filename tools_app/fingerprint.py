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
from collections.abc import Iterable
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any

from .tree import walk_folders
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
    ``tree.walk_folders`` yields them, and the newest timestamp among them all.

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
