"""The search itself, in a child process of the worker (``search_files`` starts it).

A process, not a thread: whatever a pattern or a tree costs, the worker's event loop and GIL
stay free (heartbeats, lease renewals, other tasks go on), and at the task's deadline or
cancellation the search is killed, not waited for. Limits of its own (address space, CPU time)
bound it even if the worker could not kill it.

Protocol: one JSON request on stdin; on stdout, JSON lines ``{"progress": [done, total]}``
and then one ``{"result": {...}}`` or ``{"error": {"type", "message"}}``. The folder (or
file) to search is inherited as an open descriptor, checked by the worker: the walk opens
everything relative to it, never following a symlink, so nothing outside can be reached.

No Django here: only the standard library, RE2 and ``tools_app.patterns``.
"""

from __future__ import annotations

import json
import os
import resource
import stat
import sys
from collections.abc import Iterator
from typing import Any

MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_TEXT_CHARS = 500
PROGRESS_EVERY_FILES = 200
ADDRESS_SPACE_BYTES = 2 * 1024 * 1024 * 1024
BINARY_SNIFF_BYTES = 8192
# O_NONBLOCK: a FIFO swapped in for a file must not block the open.
_NOFOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _open_under(top: int, relative: str, flags: int) -> int:
    """``relative`` (no symlinks, no "..": names from the walk) opened below the folder ``top``
    component by component, never following a symlink."""
    *folders, last = relative.split("/")
    fd = top
    try:
        for name in folders:
            child = os.open(name, _NOFOLLOW | os.O_DIRECTORY, dir_fd=fd)
            if fd != top:
                os.close(fd)
            fd = child
        return os.open(last, _NOFOLLOW | flags, dir_fd=fd)
    finally:
        if fd != top:
            os.close(fd)


def _regular_files(top: int) -> Iterator[str]:
    """The path (relative to the folder ``top``) of each regular file under it, hidden entries
    and symlinks skipped, folders entered without following a symlink."""
    pending = [""]
    while pending:
        folder = pending.pop()
        try:
            fd = top if not folder else _open_under(top, folder[:-1], os.O_DIRECTORY)
        except OSError:  # gone, or swapped for a symlink since listed
            continue
        try:
            with os.scandir(fd) as entries:
                listed = [(e.name, e.stat(follow_symlinks=False).st_mode) for e in entries]
        except OSError:
            listed = []
        finally:
            if fd != top:
                os.close(fd)
        for name, mode in listed:
            if name.startswith("."):
                continue
            if stat.S_ISREG(mode):
                yield f"{folder}{name}"
            elif stat.S_ISDIR(mode):
                pending.append(f"{folder}{name}/")


class Scan:
    def __init__(self, request: dict[str, Any]) -> None:
        from tools_app.patterns import SEARCH_MAX_MEM, glob_regex, line_regex

        self.glob = glob_regex(request["glob"], max_mem=SEARCH_MAX_MEM)
        self.name_only = "/" not in request["glob"]
        contains = request.get("contains")
        self.regex = (
            line_regex(contains, max_mem=SEARCH_MAX_MEM) if contains and request["regex"] else None
        )
        self.needle = contains.encode() if contains and not request["regex"] else None
        self.max_results = int(request["max_results"])
        self.base = request["base"]

    def candidates(self, fd: int, root_name: str) -> list[str] | None:
        """The matching files' paths, sorted; None when ``fd`` is the one file to search."""
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            return None
        if self.name_only:  # a glob without "/" matches the name, at any depth
            found = [p for p in _regular_files(fd) if self.glob.fullmatch(p.rpartition("/")[2])]
        else:
            found = [p for p in _regular_files(fd) if self.glob.fullmatch(p)]
        found.sort()
        return found

    def run(self, fd: int, root_name: str) -> dict[str, Any]:
        files = self.candidates(fd, root_name)
        if files is None:  # the search's path names a file
            files = [""] if self.glob.fullmatch(root_name) else []
        matches: list[dict[str, Any]] = []
        scanned = 0
        truncated = False
        for relative in files:
            scanned += 1
            if scanned % PROGRESS_EVERY_FILES == 0:
                _emit({"progress": [scanned, len(files)]})
            path = (
                self.base
                if not relative
                else (relative if self.base == "." else f"{self.base}/{relative}")
            )
            if self.regex is None and self.needle is None:
                matches.append({"path": path, "line": None, "text": None})
            elif (data := _read(fd, relative)) is not None:
                matches.extend(self._lines(data, path, self.max_results - len(matches)))
            if len(matches) >= self.max_results:
                truncated = scanned < len(files) or len(matches) > self.max_results
                del matches[self.max_results :]
                break
        return {"matches": matches, "files_scanned": scanned, "truncated": truncated}

    def _lines(self, data: bytes, path: str, room: int) -> list[dict[str, Any]]:
        """The matching lines of ``data`` (at most ``room + 1``), found by one pass over the
        whole text: RE2 with ``never_nl`` (or a substring find) per match, not per line."""
        if self.regex is None and self.needle not in data:  # type: ignore[operator]
            return []  # most files: no need to look line by line
        data = data.replace(b"\r\n", b"\n")
        found: list[dict[str, Any]] = []
        position = 0
        line_number, counted_to = 1, 0
        while position <= len(data) and len(found) <= room:
            if self.regex is not None:
                match = self.regex.search(data, position)
                if match is None:
                    break
                start = match.start()
            else:
                start = data.find(self.needle, position)  # type: ignore[arg-type]
                if start < 0:
                    break
            line_start = data.rfind(b"\n", 0, start) + 1
            line_end = data.find(b"\n", start)
            line_end = len(data) if line_end < 0 else line_end
            line_number += data.count(b"\n", counted_to, line_start)
            counted_to = line_start
            text = data[line_start:line_end].decode("utf-8", "replace")
            found.append({"path": path, "line": line_number, "text": text[:MAX_TEXT_CHARS]})
            position = line_end + 1
        return found


def _read(top: int, relative: str) -> bytes | None:
    """A text file's bytes (None: too large, binary, or gone meanwhile); ``relative`` "" is
    ``top`` itself."""
    try:
        handle = _open_under(top, relative, 0) if relative else os.dup(top)
    except OSError:
        return None
    try:
        if os.fstat(handle).st_size > MAX_FILE_BYTES:
            return None
        chunks = []
        offset = 0
        while chunk := os.pread(handle, 1024 * 1024, offset):
            chunks.append(chunk)
            offset += len(chunk)
            if offset > MAX_FILE_BYTES:
                return None  # grew meanwhile
        data = b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(handle)
    if b"\x00" in data[:BINARY_SNIFF_BYTES]:
        return None
    return data


def main() -> None:
    request = json.loads(sys.stdin.readline())
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_BYTES, ADDRESS_SPACE_BYTES))
    cpu = int(request["cpu_seconds"]) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    try:
        result = Scan(request).run(int(request["fd"]), request["root_name"])
    except MemoryError:
        _emit({"error": {"type": "search_too_large", "message": "the search ran out of memory"}})
        return
    _emit({"result": result})


if __name__ == "__main__":
    main()
