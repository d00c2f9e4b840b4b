"""search_files: glob plus substring or regular expression, over a folder of the workspace.

The guard against regular expressions that take forever (``(x+x+)+y``): patterns are compiled
with the ``regex`` package, whose matching takes a ``timeout`` and releases the GIL. Python's
``re`` can be neither interrupted nor timed out: run in a thread, a catastrophic pattern would
keep a core busy after the task gave up; run in a process per search, every search would pay a
process start. Here each match call gets the time left before the task's deadline, so a search
ends by then, and the pattern length is capped too.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import stat
import threading
import time
from pathlib import Path, PurePosixPath
from typing import Any

import regex
from pydantic import Field, model_validator

from ..beneath import FOLDER, open_beneath
from ..errors import ToolError
from ..fingerprint import CacheBasis, file_basis, relative_name, tree_basis, walk_tree
from ..registry import (
    ProgressCallback,
    Tool,
    ToolArgs,
    ToolContext,
    offload_long,
    register,
)
from ..workspace import Workspace, WorkspacePath

MAX_PATTERN_LENGTH = 1000
MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_TEXT_CHARS = 500
PROGRESS_EVERY_FILES = 200
DEFAULT_DEADLINE_SECONDS = 60.0


class SearchFilesArgs(ToolArgs):
    path: WorkspacePath = "."
    glob: str = Field("*", min_length=1, max_length=MAX_PATTERN_LENGTH)
    contains: str | None = Field(None, min_length=1, max_length=MAX_PATTERN_LENGTH)
    regex: bool = False
    max_results: int = Field(1000, ge=1, le=100_000)

    @model_validator(mode="after")
    def pattern_compiles(self) -> SearchFilesArgs:
        if self.regex:
            if self.contains is None:
                raise ValueError("regex needs contains (the pattern)")
            try:
                regex.compile(self.contains)
            except regex.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return self


def glob_matches(pattern: str, relative: str) -> bool:
    """A glob without "/" matches the file name at any depth; one with "/" the whole path."""
    if "/" in pattern:
        return PurePosixPath(relative).full_match(pattern)
    return fnmatch.fnmatchcase(relative.rsplit("/", 1)[-1], pattern)


def candidate_files(root: Path, top: int, pattern: str) -> list[tuple[Path, str]]:
    """Regular files under ``root`` (open as ``top``; hidden ones and symlinks skipped) whose
    path matches."""
    if not stat.S_ISDIR(os.fstat(top).st_mode):
        return [(root, root.name)] if glob_matches(pattern, root.name) else []
    found = []
    for path, st in walk_tree(root, recursive=True, include_hidden=False, top_fd=top):
        if stat.S_ISREG(st.st_mode):
            relative = relative_name(root, path)
            if glob_matches(pattern, relative):
                found.append((Path(path), relative))
    found.sort(key=lambda item: item[1])
    return found


class _Search:
    def __init__(self, args: SearchFilesArgs, deadline: float, stop: threading.Event) -> None:
        self.args = args
        self.deadline = deadline
        self.stop = stop
        self.pattern = regex.compile(args.contains) if args.regex and args.contains else None

    def line_matches(self, line: str) -> bool:
        if self.pattern is None:
            return self.args.contains in line  # type: ignore[operator]
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ToolError("timeout", "the search ran out of time")
        try:
            return self.pattern.search(line, timeout=left, concurrent=True) is not None
        except TimeoutError:
            raise ToolError(
                "regex_timeout", "the regular expression took too long; simplify it"
            ) from None

    def run(self, workspace: Workspace, report: ProgressCallback) -> dict[str, Any]:
        # Every file is opened beneath the workspace's descriptor, by its path from there, so a
        # folder swapped for a symlink during the search leads nowhere outside.
        top = workspace.open(self.args.path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            named = workspace.name_of(top, self.args.path)
            files = candidate_files(workspace.root / named, top, self.args.glob)
            # Matches are named from the folder searched (a file's: its own folder).
            base = named if stat.S_ISDIR(os.fstat(top).st_mode) else posixpath.dirname(named)
        finally:
            os.close(top)
        self.workspace_fd = workspace.open(".", FOLDER)
        try:
            return self._scan(files, base, report)
        finally:
            os.close(self.workspace_fd)

    def _scan(
        self, files: list[tuple[Path, str]], base: str, report: ProgressCallback
    ) -> dict[str, Any]:
        matches: list[dict[str, Any]] = []
        scanned = 0
        truncated = False
        for path, relative in files:
            if self.stop.is_set():
                raise ToolError("cancelled", "the search was stopped")
            if time.monotonic() > self.deadline:
                raise ToolError("timeout", "the search ran out of time")
            scanned += 1
            if scanned % PROGRESS_EVERY_FILES == 0:
                report(scanned, len(files), f"{scanned} of {len(files)} files scanned")
            name = relative if base in (".", "") else f"{base}/{relative}"
            if self.args.contains is None:
                matches.append({"path": name, "line": None, "text": None})
            else:
                matches.extend(self._search_file(path, name, self.args.max_results - len(matches)))
            if len(matches) >= self.args.max_results:
                truncated = scanned < len(files) or len(matches) > self.args.max_results
                del matches[self.args.max_results :]
                break
        return {"matches": matches, "files_scanned": scanned, "truncated": truncated}

    def _search_file(self, path: Path, name: str, room: int) -> list[dict[str, Any]]:
        try:
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
            with open(open_beneath(self.workspace_fd, name, flags), "rb") as handle:
                if os.fstat(handle.fileno()).st_size > MAX_FILE_BYTES:
                    return []
                data = handle.read()
        except OSError:
            return []  # vanished or unreadable meanwhile: not part of the answer
        if b"\x00" in data[:8192]:
            return []  # binary
        text = data.decode("utf-8", "replace")
        if self.pattern is None and self.args.contains not in text:
            return []  # most files: no need to look line by line
        found = []
        for number, line in enumerate(text.splitlines(), 1):
            if number % 1000 == 0 and self.stop.is_set():
                raise ToolError("cancelled", "the search was stopped")
            if self.line_matches(line):
                found.append({"path": name, "line": number, "text": line[:MAX_TEXT_CHARS]})
                if len(found) > room:
                    break
        return found


@register
class SearchFiles(Tool):
    name = "search_files"
    description = (
        "Find files under a folder by glob (hidden files and symlinks skipped), and lines "
        "containing a substring or matching a regular expression (with line numbers)."
    )
    Args = SearchFilesArgs
    read_only = True
    cacheable = True
    default_timeout = DEFAULT_DEADLINE_SECONDS

    def cache_basis(self, args: SearchFilesArgs, workspace: Workspace) -> CacheBasis | None:
        path = workspace.resolve(args.path)
        normalized = {**args.model_dump(), "path": str(path)}
        if not path.is_dir():
            return file_basis(workspace, path, normalized)
        return tree_basis(workspace, path, normalized, recursive=True, include_hidden=False)

    async def run(self, args: SearchFilesArgs, ctx: ToolContext) -> dict[str, Any]:
        deadline = time.monotonic() + (ctx.limit(None) or DEFAULT_DEADLINE_SECONDS)
        stop = threading.Event()
        search = _Search(args, deadline, stop)
        try:
            return await offload_long(search.run, ctx.workspace, ctx.progress_from_thread())
        except FileNotFoundError:
            raise ToolError("not_found", f"{args.path!r} does not exist") from None
        finally:
            stop.set()  # a cancelled or timed-out task stops its thread at the next file
