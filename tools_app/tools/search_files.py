"""search_files: glob plus substring or regular expression, over a folder of the workspace.

Patterns run on RE2 (``tools_app.patterns``): linear in the text, never backtracking. They are
compiled at validation under a small budget, so a task's arguments are checked when it is
submitted, cheaply. The search runs in a child process (``tools_app.search_scan``) that is
killed at the task's deadline or cancellation: neither a large tree nor a pattern can hold the
worker's event loop or its GIL, and the worker's heartbeats and leases go on meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import posixpath
import sys
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from ..errors import ToolError
from ..fingerprint import CacheBasis, file_basis, tree_basis
from ..patterns import MAX_PATTERN_LENGTH, PatternError, glob_regex, line_regex
from ..registry import Tool, ToolArgs, ToolContext, offload, register
from ..search_scan import PROGRESS_EVERY_FILES
from ..workspace import Workspace, WorkspacePath

DEFAULT_DEADLINE_SECONDS = 60.0
# The child's answer is one JSON line: room for max_results matches of MAX_TEXT_CHARS each.
MAX_ANSWER_BYTES = 256 * 1024 * 1024
_PROJECT = str(Path(__file__).resolve().parents[2])
_CHILD = (
    "import sys; sys.path.insert(0, sys.argv[1]); from tools_app.search_scan import main; main()"
)

__all__ = ["PROGRESS_EVERY_FILES", "SearchFiles", "SearchFilesArgs"]


class SearchFilesArgs(ToolArgs):
    path: WorkspacePath = "."
    glob: str = Field(
        "*",
        min_length=1,
        max_length=MAX_PATTERN_LENGTH,
        description=(
            "Without '/': matches file names at any depth; with '/': the path from the "
            "search's folder ('**' for any number of folders). '*', '?', '[abc]', '[!abc]'."
        ),
    )
    contains: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_PATTERN_LENGTH,
        description=(
            "A substring, or with regex=true an RE2 regular expression matched per line "
            "(no backreferences or look-around; ^ and $ match at line ends)."
        ),
    )
    regex: bool = False
    max_results: int = Field(1000, ge=1, le=100_000)

    @model_validator(mode="after")
    def patterns_compile(self) -> SearchFilesArgs:
        try:
            glob_regex(self.glob)
        except PatternError as exc:
            raise ValueError(f"invalid glob: {exc}") from None
        if self.regex:
            if self.contains is None:
                raise ValueError("regex needs contains (the pattern)")
            try:
                line_regex(self.contains)
            except PatternError as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return self


def _open_root(workspace: Workspace, path: str) -> tuple[int, str]:
    """The search's folder or file, opened beneath the workspace for the child to inherit,
    and its path from the workspace (what matches are named from)."""
    fd = workspace.open(path, os.O_RDONLY | os.O_NONBLOCK)
    return fd, workspace.name_of(fd, path)


async def _search(args: SearchFilesArgs, ctx: ToolContext, fd: int, named: str) -> Any:
    limit = ctx.limit(None) or DEFAULT_DEADLINE_SECONDS
    request = {
        **args.model_dump(exclude={"path"}),
        "fd": fd,
        "root_name": posixpath.basename(named),
        "base": named,
        "cpu_seconds": limit,
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        "-c",
        _CHILD,
        _PROJECT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        pass_fds=(fd,),
        limit=MAX_ANSWER_BYTES,
    )
    try:
        async with asyncio.timeout(limit):
            assert child.stdin is not None and child.stdout is not None  # noqa: S101 (PIPEs)
            child.stdin.write(json.dumps(request).encode() + b"\n")
            await child.stdin.drain()
            child.stdin.close()
            while line := await child.stdout.readline():
                message = json.loads(line)
                if "progress" in message:
                    done, total = message["progress"]
                    ctx.report_progress(done, total, f"{done} of {total} files scanned")
                elif "error" in message:
                    raise ToolError(message["error"]["type"], message["error"]["message"])
                else:
                    return message["result"]
            await child.wait()
            raise ToolError("search_failed", f"the search process ended ({child.returncode})")
    except TimeoutError:
        raise ToolError("timeout", f"the search ran out of time ({limit:g} s)") from None
    finally:
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.kill()  # a timed-out or cancelled search is killed, not waited for
            await child.wait()


@register
class SearchFiles(Tool):
    name = "search_files"
    description = (
        "Find files under a folder by glob (hidden files and symlinks skipped), and lines "
        "containing a substring or matching a regular expression (with line numbers). "
        "Regular expressions use RE2 syntax (linear time: no backreferences, no look-around)."
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
        try:
            fd, named = await offload(_open_root, ctx.workspace, args.path)
        except FileNotFoundError:
            raise ToolError("not_found", f"{args.path!r} does not exist") from None
        try:
            result: dict[str, Any] = await _search(args, ctx, fd, named)
        finally:
            os.close(fd)
        return result
