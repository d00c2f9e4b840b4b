"""Opening a path beneath a folder's descriptor, so that no swap of a folder for a symlink, however
timed, leads the open outside it.

A check of the real path followed by an open by name can be raced: between the two, a folder on
the way is replaced by a symlink to ``/``. Here the path is resolved by the kernel relative to the
open folder with ``openat2(RESOLVE_BENEATH)`` (Linux 5.6+): ``..`` above it, absolute symlinks and
symlinks that climb out fail with EXDEV. Where ``openat2`` is missing (old kernels, some seccomp
profiles), the same is done one component at a time: each folder is opened relative to the
previous one's descriptor with ``O_NOFOLLOW``, and symlinks are read and followed by hand, never
above the starting folder.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform

SYS_OPENAT2 = 437  # the same number on every architecture (added after the tables were unified)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_BENEATH = 0x08
MAX_SYMLINKS = 40  # as the kernel's own resolution
FOLDER = os.O_RDONLY | os.O_DIRECTORY


class OutsideError(OSError):
    """The path leads outside the folder (``..`` above it, or a symlink out)."""

    def __init__(self, path: str) -> None:
        super().__init__(errno.EXDEV, "leads outside the folder", path)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _openat2(dir_fd: int, path: str, flags: int, mode: int) -> int:
    tmpfile = getattr(os, "O_TMPFILE", 0)  # includes O_DIRECTORY's bit: compare it whole
    creating = flags & os.O_CREAT or (tmpfile and flags & tmpfile == tmpfile)
    how = _OpenHow(
        flags | os.O_CLOEXEC, mode if creating else 0, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS
    )
    # Every argument typed: a bare int goes as a 32-bit int, and the size is read as 64 bits.
    fd = _libc().syscall(
        ctypes.c_long(SYS_OPENAT2),
        ctypes.c_int(dir_fd),
        ctypes.c_char_p(os.fsencode(path)),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if fd < 0:
        code = ctypes.get_errno()
        if code == errno.EXDEV:
            raise OutsideError(path)
        raise OSError(code, os.strerror(code), path)
    return fd


@functools.cache
def have_openat2() -> bool:
    if platform.system() != "Linux":
        return False
    try:
        os.close(_openat2(os.open("/", FOLDER), ".", FOLDER, 0))
    except OSError:  # ENOSYS (old kernel) or EPERM (a seccomp filter)
        return False
    return True


def open_beneath(dir_fd: int, path: str, flags: int, mode: int = 0o666) -> int:
    """A descriptor of ``path`` (relative) opened with ``flags`` beneath the folder ``dir_fd``.

    Symlinks that stay beneath are followed (the last component too, unless ``O_NOFOLLOW``).
    Raises OutsideError, or OSError as ``os.open`` would.
    """
    if have_openat2():
        for _ in range(10):
            try:
                return _openat2(dir_fd, path or ".", flags, mode)
            except BlockingIOError:  # EAGAIN: a rename raced a ".." lookup; try again
                continue
    return _walk(dir_fd, path, flags, mode)


def _parts(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


def _walk(dir_fd: int, path: str, flags: int, mode: int) -> int:
    """``open_beneath`` one component at a time."""
    parts = _parts(path)
    if path.endswith("/"):
        flags |= os.O_DIRECTORY  # as the kernel reads a trailing slash
    folders = [os.dup(dir_fd)]  # the descriptors from the starting folder down
    links = 0
    try:
        while parts:
            name = parts.pop(0)
            if name == "..":
                if len(folders) == 1:
                    raise OutsideError(path)
                os.close(folders.pop())
                continue
            try:
                if parts:
                    folders.append(os.open(name, FOLDER | os.O_NOFOLLOW, dir_fd=folders[-1]))
                    continue
                return os.open(name, flags | os.O_NOFOLLOW, mode, dir_fd=folders[-1])
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR) or (
                    flags & os.O_NOFOLLOW and not parts
                ):
                    raise
                try:
                    target = os.readlink(name, dir_fd=folders[-1])
                except OSError:
                    raise exc from None  # not a symlink: a file where a folder was wanted
            links += 1
            if links > MAX_SYMLINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            if target.startswith("/"):
                raise OutsideError(path)
            parts = _parts(target) + parts
        return os.open(".", flags, mode, dir_fd=folders[-1])
    finally:
        for fd in folders:
            os.close(fd)
