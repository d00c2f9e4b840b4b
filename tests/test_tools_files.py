"""The file tools, in-process: success and failure paths, effects on disk."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tools_app.registry import all_tools, get_tool
from tools_app.tools.read_file import MAX_READ_BYTES
from tools_app.tools.search_files import PROGRESS_EVERY_FILES

from .tool_helpers import fails, run

pytestmark = pytest.mark.timeout(60)


API_TOOLS = {
    "read_file",
    "write_file",
    "list_directory",
    "create_directory",
    "delete_path",
    "file_info",
    "search_files",
    "hash_file",
    "http_fetch",
    "run_command",
    "run_python",
    "llm_chat",
}
CACHEABLE = {"read_file", "list_directory", "file_info", "search_files", "hash_file"}


def test_registry_has_every_tool_of_the_contract_with_its_flags() -> None:
    tools = {tool.name: tool for tool in all_tools()}
    assert set(tools) == API_TOOLS
    assert {name for name, tool in tools.items() if tool.cacheable} == CACHEABLE
    for tool in tools.values():
        described = tool.describe()
        assert described["args_schema"]["type"] == "object"
        assert described["description"]
        assert tool.cacheable <= tool.read_only  # nothing that writes is ever cached


# --- read_file / write_file ------------------------------------------------------------------------


async def test_read_file_ranges_encodings_and_truncation(ws: Path) -> None:
    (ws / "notes.txt").write_text("héllo world")
    whole = (await run("read_file", {"path": "notes.txt"})).result
    assert whole == {"content": "héllo world", "size": 12, "encoding": "utf-8", "truncated": False}
    # A range that cuts "é" in two keeps only whole characters.
    part = (await run("read_file", {"path": "notes.txt", "offset": 0, "length": 2})).result
    assert part["content"] == "h" and part["truncated"] is True
    latin = (
        await run("read_file", {"path": "notes.txt", "encoding": "latin-1", "offset": 7})
    ).result
    assert latin["content"] == "world"


async def test_read_file_failures(ws: Path) -> None:
    (ws / "blob.bin").write_bytes(b"\xff\xfe\x00\x81" * 10)
    (ws / "folder").mkdir()
    assert (await fails("read_file", {"path": "blob.bin"})).type == "binary_file"
    assert (await fails("read_file", {"path": "missing.txt"})).type == "not_found"
    assert (await fails("read_file", {"path": "folder"})).type == "is_a_directory"
    assert (
        await fails("read_file", {"path": "blob.bin", "encoding": "klingon"})
    ).type == "invalid_encoding"
    assert (
        await fails("read_file", {"path": "x", "length": MAX_READ_BYTES + 1})
    ).type == "invalid_args"


async def test_write_file_overwrite_append_and_refusals(ws: Path) -> None:
    assert (await run("write_file", {"path": "a/b/c.txt", "content": "one"})).result == {
        "path": "a/b/c.txt",
        "size": 3,
    }
    await run("write_file", {"path": "a/b/c.txt", "content": "+two", "append": True})
    assert (ws / "a/b/c.txt").read_text() == "one+two"
    error = await fails("write_file", {"path": "a/b/c.txt", "content": "x", "overwrite": False})
    assert error.type == "already_exists" and (ws / "a/b/c.txt").read_text() == "one+two"
    assert (await fails("write_file", {"path": "a", "content": "x"})).type == "is_a_directory"
    assert not [
        p for p in (ws / "a/b").iterdir() if p.name.startswith(".clawsite-")
    ]  # no temporaries left


# --- folders ---------------------------------------------------------------------------------------


async def test_list_directory_flat_recursive_hidden(ws: Path) -> None:
    (ws / "docs/deep").mkdir(parents=True)
    (ws / "docs/a.md").write_text("aa")
    (ws / "docs/deep/b.md").write_text("b")
    (ws / ".secret").write_text("s")
    (ws / "link").symlink_to("docs")
    flat = (await run("list_directory", {})).result["entries"]
    assert [(e["path"], e["type"]) for e in flat] == [("docs", "directory"), ("link", "symlink")]
    deep = (await run("list_directory", {"path": "docs", "recursive": True})).result["entries"]
    assert [(e["path"], e["size"]) for e in deep] == [
        ("docs/a.md", 2),
        ("docs/deep", None),
        ("docs/deep/b.md", 1),
    ]
    hidden = (await run("list_directory", {"include_hidden": True})).result["entries"]
    assert ".secret" in {e["name"] for e in hidden}
    assert (await fails("list_directory", {"path": "nope"})).type == "not_found"
    assert (await fails("list_directory", {"path": "docs/a.md"})).type == "not_a_directory"


async def test_create_directory(ws: Path) -> None:
    assert (await run("create_directory", {"path": "x/y"})).result == {
        "path": "x/y",
        "created": True,
    }
    assert (ws / "x/y").is_dir()
    assert (await run("create_directory", {"path": "x/y"})).result["created"] is False
    assert (await fails("create_directory", {"path": "p/q", "parents": False})).type == "not_found"
    (ws / "f").write_text("")
    assert (await fails("create_directory", {"path": "f/g"})).type == "not_a_directory"
    assert (await fails("write_file", {"path": "f/g", "content": ""})).type == "not_a_directory"


async def test_delete_path_files_folders_links_never_the_root(ws: Path, tmp_path: Path) -> None:
    (ws / "d/e").mkdir(parents=True)
    (ws / "d/e/f.txt").write_text("f")
    (ws / "g.txt").write_text("g")
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    (ws / "out").symlink_to(outside)
    assert (await run("delete_path", {"path": "g.txt"})).result == {
        "path": "g.txt",
        "deleted": True,
    }
    assert not (ws / "g.txt").exists()
    assert (await fails("delete_path", {"path": "d"})).type == "not_empty"
    await run("delete_path", {"path": "d", "recursive": True})
    assert not (ws / "d").exists()
    # A symlink is removed itself; what it points to (outside!) is untouched.
    await run("delete_path", {"path": "out"})
    assert not (ws / "out").is_symlink() and outside.read_text() == "keep me"
    for root in (".", "", "a/..", "./"):
        assert (await fails("delete_path", {"path": root})).type == "invalid_args"
    (ws / "self").symlink_to(".")
    await run("delete_path", {"path": "self"})  # removes the link, not the workspace
    assert ws.is_dir()  # noqa: ASYNC240  (a test may block; polling a process or file)
    assert (await fails("delete_path", {"path": "missing"})).type == "not_found"


# --- file_info / hash_file -------------------------------------------------------------------------


async def test_file_info_with_and_without_sha256(ws: Path) -> None:
    (ws / "f.txt").write_bytes(b"abc")
    (ws / "sub").mkdir()
    info = (await run("file_info", {"path": "f.txt", "sha256": True})).result
    assert info["type"] == "file" and info["size"] == 3 and info["modified"].endswith("Z")
    assert info["sha256"] == hashlib.sha256(b"abc").hexdigest()
    assert "sha256" not in (await run("file_info", {"path": "f.txt"})).result
    assert (await run("file_info", {"path": "sub", "sha256": True})).result["type"] == "directory"
    assert (await fails("file_info", {"path": "nope"})).type == "not_found"


@pytest.mark.parametrize("algorithm", ["sha256", "sha1", "md5", "sha512", "blake2b"])
async def test_hash_file_streams_every_algorithm(ws: Path, algorithm: str) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # several chunks and a remainder
    (ws / "big.bin").write_bytes(data)
    result = (await run("hash_file", {"path": "big.bin", "algorithm": algorithm})).result
    assert result == {
        "path": "big.bin",
        "algorithm": algorithm,
        "size": len(data),
        "hexdigest": hashlib.new(algorithm, data).hexdigest(),
    }


async def test_hash_file_failures(ws: Path) -> None:
    (ws / "dir").mkdir()
    assert (await fails("hash_file", {"path": "nope"})).type == "not_found"
    assert (await fails("hash_file", {"path": "dir"})).type == "is_a_directory"
    assert (await fails("hash_file", {"path": "x", "algorithm": "crc32"})).type == "invalid_args"


# --- search_files ----------------------------------------------------------------------------------


async def test_search_substring_regex_glob_line_numbers(ws: Path) -> None:
    (ws / "src/pkg").mkdir(parents=True)
    (ws / "src/a.py").write_text("import os\nTODO: one\nx = 1\n")
    (ws / "src/pkg/b.py").write_text("# TODO two\n")
    (ws / "src/c.txt").write_text("TODO three\n")
    (ws / "src/.hidden.py").write_text("TODO hidden\n")
    (ws / "src/bin.py").write_bytes(b"TODO\x00binary")
    found = (await run("search_files", {"path": "src", "glob": "*.py", "contains": "TODO"})).result
    assert found["matches"] == [
        {"path": "src/a.py", "line": 2, "text": "TODO: one"},
        {"path": "src/pkg/b.py", "line": 1, "text": "# TODO two"},
    ]
    assert found["files_scanned"] == 3 and found["truncated"] is False
    regex = (
        await run("search_files", {"glob": "pkg/*.py", "contains": r"^#\s+TODO", "regex": True})
    ).result
    assert [m["path"] for m in regex["matches"]] == []  # "pkg/*.py" is matched from the search root
    regex = (
        await run(
            "search_files",
            {"path": "src", "glob": "pkg/*.py", "contains": r"^#\s+TODO", "regex": True},
        )
    ).result
    assert [m["path"] for m in regex["matches"]] == ["src/pkg/b.py"]
    names = (await run("search_files", {"glob": "*.txt"})).result["matches"]
    assert names == [{"path": "src/c.txt", "line": None, "text": None}]
    capped = (await run("search_files", {"contains": "TODO", "max_results": 1})).result
    assert len(capped["matches"]) == 1 and capped["truncated"] is True


async def test_search_refuses_bad_patterns_and_missing_folders(ws: Path) -> None:
    assert (await fails("search_files", {"contains": "(", "regex": True})).type == "invalid_args"
    assert (await fails("search_files", {"contains": "x" * 1001})).type == "invalid_args"
    assert (await fails("search_files", {"regex": True})).type == "invalid_args"
    assert (await fails("search_files", {"path": "nope", "contains": "x"})).type == "not_found"


async def test_search_reports_progress_on_large_trees(ws: Path) -> None:
    for index in range(PROGRESS_EVERY_FILES * 2 + 5):
        (ws / f"f{index:04}.txt").write_text("needle\n" if index % 100 == 0 else "hay\n")
    reports: list[tuple[int | None, int | None, str]] = []
    result = (
        await run("search_files", {"contains": "needle"}, progress=lambda *r: reports.append(r))
    ).result
    await asyncio.sleep(0)  # progress from the scan thread is delivered through the loop
    assert len(result["matches"]) == 5 and result["files_scanned"] == PROGRESS_EVERY_FILES * 2 + 5
    assert [done for done, _, _ in reports] == [PROGRESS_EVERY_FILES, PROGRESS_EVERY_FILES * 2]
    assert {total for _, total, _ in reports} == {PROGRESS_EVERY_FILES * 2 + 5}


async def test_pattern_bombs_finish_with_the_right_answer(ws: Path) -> None:
    """The issue's bombs: a glob with ~20 stars against a 40-character name (pathlib's
    full_match never ended) and a nested repetition against 5,000 x's (re backtracks forever;
    the old code failed the task with regex_timeout). On RE2 both simply answer."""
    (ws / "d").mkdir()
    (ws / "d" / ("a" * 39 + "c")).write_text("x" * 5000 + "\n" + "xxy\n")
    stars = "d/" + "*a" * 20 + "*b"
    found = (await run("search_files", {"glob": stars}, task_timeout=60)).result
    assert found == {"matches": [], "files_scanned": 0, "truncated": False}
    bomb = {"glob": "d/*", "contains": "(x+x+)+y", "regex": True}
    found = (await run("search_files", bomb, task_timeout=60)).result
    assert found["matches"] == [{"path": "d/" + "a" * 39 + "c", "line": 2, "text": "xxy"}]


async def test_a_search_past_its_deadline_is_killed(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever holds the search's process up, the task's deadline kills it (not waits)."""
    (ws / "a.txt").write_text("hay\n")
    started: list[asyncio.subprocess.Process] = []
    spawn = asyncio.create_subprocess_exec

    async def stuck(*argv: str, **options: Any) -> asyncio.subprocess.Process:
        child = await spawn(sys.executable, "-c", "import time; time.sleep(600)", **options)
        started.append(child)
        return child

    monkeypatch.setattr(asyncio, "create_subprocess_exec", stuck)
    error = await fails("search_files", {"contains": "hay"}, task_timeout=1)
    assert error.type == "timeout"
    [child] = started
    assert child.returncode is not None  # reaped: killed, not left running
    with pytest.raises(ProcessLookupError):
        os.kill(child.pid, 0)


def test_search_args_validation_at_submit_time() -> None:
    tool = get_tool("search_files")
    assert tool is not None
    with pytest.raises(ValidationError):
        tool.parse_args({"contains": "[", "regex": True})
    tool.parse_args({"contains": "[", "regex": False})  # a substring may hold any character
