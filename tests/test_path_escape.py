"""The path-escape corpus, run against every tool that takes a path: nothing outside the
caller's workspace is read, listed, hashed, written, created or deleted.

Alice's workspace is ``<root>/alice``; beside it lies ``<root>/alice_evil`` (a sibling whose
name starts with hers: a string-prefix check would let it through) and a folder outside the
root altogether. Each case is refused before running (``invalid_args``, also at submission),
refused while running (``path_outside_workspace``, symlinks), or names something harmless
inside the workspace (look-alike characters are just characters)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from tasks_app.errors import ApiError
from tasks_app.services import validate_submission
from tools_app.errors import ToolError

from .tool_helpers import prepare_workspace, run

pytestmark = pytest.mark.timeout(60)

SECRET = "TOP SECRET of alice_evil"
OUTSIDE = "outside the root"

# tool name -> the arguments that put the path under test to use
PATH_TOOLS: dict[str, Any] = {
    "read_file": lambda p: {"path": p},
    "write_file": lambda p: {"path": p, "content": "pwned"},
    "list_directory": lambda p: {"path": p, "recursive": True, "include_hidden": True},
    "create_directory": lambda p: {"path": p},
    "delete_path": lambda p: {"path": p, "recursive": True},
    "file_info": lambda p: {"path": p, "sha256": True},
    "search_files": lambda p: {"path": p, "contains": "SECRET"},
    "hash_file": lambda p: {"path": p},
    "run_command": lambda p: {"argv": ["ls", "-la"], "cwd": p},
}

LEXICAL = [
    "..",
    "../alice_evil/secret.txt",
    "../alice_evil",
    "sub/../../alice_evil/secret.txt",
    "./../alice_evil",
    "/etc/passwd",
    "/",
    "\\..\\alice_evil",
    "C:/secret.txt",
    "secret.txt\x00.png",
    "x" * 256,
    "a/" * 2100,
]
SYMLINKS = [
    "link_file",
    "link_dir",
    "link_dir/secret.txt",
    "link_root/etc/passwd",
    "sub/../link_dir",
    "sub/up/alice_evil",
]
LOOKALIKES = [
    "\u2024\u2024/alice_evil/secret.txt",  # ONE DOT LEADER, twice
    "\uff0e\uff0e/alice_evil",  # FULLWIDTH FULL STOP
    "..\u2215alice_evil",  # DIVISION SLASH
    "\u002e\u0338\u002e/x",  # dots with a combining overlay
]


def snapshot(*folders: Path) -> dict[str, tuple[int, int, str]]:
    """Every entry under the folders: size, mtime_ns, and a file's content digest."""
    seen = {}
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                st = path.lstat()
                digest = (
                    hashlib.sha256(path.read_bytes()).hexdigest()
                    if path.is_file() and not path.is_symlink()
                    else ""
                )
                seen[str(path)] = (st.st_size, st.st_mtime_ns, digest)
    return seen


@pytest.fixture
def world(settings: Any, tmp_path: Path) -> dict[str, Path]:
    settings.CLAWSITE_COMMAND_ALLOWLIST = ["ls"]
    workspace = prepare_workspace(settings)
    sibling = workspace.parent / "alice_evil"
    sibling.mkdir()
    (sibling / "secret.txt").write_text(SECRET)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(OUTSIDE)
    (workspace / "sub").mkdir()
    (workspace / "link_file").symlink_to(sibling / "secret.txt")
    (workspace / "link_dir").symlink_to(sibling)
    (workspace / "link_root").symlink_to("/")
    (workspace / "sub/up").symlink_to("../..")
    return {"workspace": workspace, "sibling": sibling, "outside": outside}


def _leaks(result: dict[str, Any]) -> bool:
    text = repr(result)
    return SECRET in text or OUTSIDE in text or "root:x:0:0" in text


@pytest.mark.parametrize("tool", PATH_TOOLS)
@pytest.mark.parametrize("path", LEXICAL)
async def test_lexical_escapes_are_refused_before_running(
    world: dict[str, Path], tool: str, path: str
) -> None:
    before = snapshot(world["sibling"], world["outside"])
    args = PATH_TOOLS[tool](path)
    with pytest.raises(ApiError) as refused:
        validate_submission({"tool": tool, "args": args}, None)
    assert refused.value.code == "invalid_args" and refused.value.status == 400
    with pytest.raises(ToolError) as caught:
        await run(tool, args)
    assert caught.value.type == "invalid_args"
    assert snapshot(world["sibling"], world["outside"]) == before


@pytest.mark.parametrize("tool", PATH_TOOLS)
@pytest.mark.parametrize("path", SYMLINKS)
async def test_symlinks_out_are_refused_while_running(
    world: dict[str, Path], tool: str, path: str
) -> None:
    before = snapshot(world["sibling"], world["outside"])
    workspace = world["workspace"]
    args = PATH_TOOLS[tool](path)
    validate_submission({"tool": tool, "args": args}, None)  # lexically fine: only running can tell
    try:
        result = (await run(tool, args)).result
    except ToolError as error:
        assert error.type == "path_outside_workspace", error.message
    else:
        # Deleting a link removes the link itself, which lies inside: allowed, harmless.
        assert tool == "delete_path" and result["path"] in {"link_file", "link_dir", "link_root"}
        assert not (workspace / result["path"]).is_symlink()
    assert snapshot(world["sibling"], world["outside"]) == before
    assert world["sibling"].is_dir() and (world["sibling"] / "secret.txt").read_text() == SECRET


@pytest.mark.parametrize("tool", PATH_TOOLS)
@pytest.mark.parametrize("path", LOOKALIKES)
async def test_lookalike_characters_stay_inside(
    world: dict[str, Path], tool: str, path: str
) -> None:
    before = snapshot(world["sibling"], world["outside"])
    workspace = world["workspace"]
    try:
        result = (await run(tool, PATH_TOOLS[tool](path))).result
    except ToolError as error:
        # Nothing by that name exists inside the workspace yet.
        assert error.type in {"not_found", "not_a_directory"}, error.message
    else:
        assert not _leaks(result)
        if tool in ("write_file", "create_directory"):
            assert (workspace / path).exists() and (workspace / path).resolve().is_relative_to(
                workspace
            )
    assert snapshot(world["sibling"], world["outside"]) == before


@pytest.mark.parametrize("tool", ["list_directory", "search_files"])
async def test_walks_do_not_follow_symlinks_out(world: dict[str, Path], tool: str) -> None:
    """A listing or search of the workspace itself shows the links, never what lies behind them."""
    result = (await run(tool, PATH_TOOLS[tool]("."))).result
    assert not _leaks(result)


@pytest.mark.parametrize("tool", PATH_TOOLS)
async def test_symlink_loops_fail_cleanly(world: dict[str, Path], tool: str) -> None:
    """A loop is a ToolError (or, for tools that replace or remove the link itself, harmless
    success inside the workspace), never an unexpected exception, never an effect outside."""
    before = snapshot(world["sibling"], world["outside"])
    (world["workspace"] / "loop").symlink_to("loop")
    (world["workspace"] / "ping").symlink_to("pong")
    (world["workspace"] / "pong").symlink_to("ping")
    for path in ("loop", "ping/x"):
        try:
            await run(tool, PATH_TOOLS[tool](path))
        except ToolError as error:
            assert error.type != "invalid_args", error.message
        else:
            assert tool in ("write_file", "delete_path") and path == "loop"
    assert snapshot(world["sibling"], world["outside"]) == before


async def test_long_names_inside_are_fine_and_too_long_refused(world: dict[str, Path]) -> None:
    name = "n" * 255
    await run("write_file", {"path": name, "content": "ok"})
    assert (world["workspace"] / name).read_text() == "ok"
    with pytest.raises(ToolError) as caught:
        await run("write_file", {"path": name + "n", "content": "no"})
    assert caught.value.type == "invalid_args"
