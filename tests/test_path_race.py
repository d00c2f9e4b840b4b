"""Race-free paths: while a thread swaps a folder of the workspace for a symlink to the outside
and back as fast as it can, thousands of file-tool calls read, list, search, hash, write, make and
delete through it, and not one touches or shows anything outside."""

from __future__ import annotations

import itertools
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from tools_app import beneath
from tools_app.errors import ToolError

from .tool_helpers import prepare_workspace, run

pytestmark = pytest.mark.timeout(300)

INSIDE = "inside-3e1b"
OUTSIDE = "outside-9f4c"
ROUNDS = 300

CALLS: list[tuple[str, dict[str, Any]]] = [
    ("read_file", {"path": "d/f.txt"}),
    ("hash_file", {"path": "d/f.txt"}),
    ("file_info", {"path": "d/f.txt", "sha256": True}),
    ("list_directory", {"path": "d", "recursive": True}),
    ("search_files", {"path": "d", "contains": "side"}),
    ("search_files", {"path": ".", "contains": "side"}),
    ("write_file", {"path": "d/new.txt", "content": INSIDE}),
    ("write_file", {"path": "d/f.txt", "content": INSIDE, "append": True}),
    ("create_directory", {"path": "d/made"}),
    ("delete_path", {"path": "d/victim.txt"}),
]


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): path.read_text() if path.is_file() else "<dir>"
        for path in sorted(folder.rglob("*"))
    }


class Swapper(threading.Thread):
    """Turns ``ws/d`` into a symlink to ``outside`` and back into the real folder, in a loop."""

    def __init__(self, ws: Path, outside: Path) -> None:
        super().__init__(daemon=True)
        self.ws, self.outside = ws, outside
        self.done = threading.Event()
        self.swaps = 0

    def run(self) -> None:
        d, parked = self.ws / "d", self.ws / "parked"
        while not self.done.is_set():
            try:
                os.rename(d, parked)
                os.symlink(self.outside, d)
                os.unlink(d)
                os.rename(parked, d)
                (d / "victim.txt").write_text(INSIDE)
                self.swaps += 1
            except OSError:
                self.tidy(d, parked)

    @staticmethod
    def tidy(d: Path, parked: Path) -> None:
        """A tool made ``d`` meanwhile (write_file makes parents): drop it, unpark the real one."""
        try:
            if d.is_symlink():
                os.unlink(d)
            elif d.is_dir() and parked.is_dir():
                shutil.rmtree(d)
            if parked.is_dir() and not d.exists():
                os.rename(parked, d)
        except OSError:
            pass  # a tool is writing into it right now: next time round


@pytest.mark.parametrize("kernel", ["openat2", "component walk"])
async def test_no_operation_touches_the_outside_under_a_swapping_race(
    settings: Any, tmp_path: Path, monkeypatch: Any, kernel: str
) -> None:
    if kernel == "openat2":
        assert beneath.have_openat2()  # this machine's kernel has it: both paths are tested
    else:
        monkeypatch.setattr(beneath, "have_openat2", lambda: False)
    settings.CLAWSITE_CACHE_ENABLED = False  # every call does the work (and the race) itself
    ws = prepare_workspace(settings)
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("f.txt", "victim.txt", "new.txt"):
        (outside / name).write_text(OUTSIDE)
    (ws / "d").mkdir()
    (ws / "d" / "f.txt").write_text(INSIDE)
    (ws / "d" / "victim.txt").write_text(INSIDE)
    before = snapshot(outside)

    swapper = Swapper(ws, outside)
    swapper.start()
    outcomes: dict[str, int] = {}
    try:
        for (tool, args), _ in itertools.product(CALLS, range(ROUNDS)):
            try:
                result = (await run(tool, args)).result
            except ToolError as error:
                outcomes[error.type] = outcomes.get(error.type, 0) + 1
                continue
            assert OUTSIDE not in repr(result), (tool, result)
            outcomes["ok"] = outcomes.get("ok", 0) + 1
    finally:
        swapper.done.set()
        swapper.join()

    assert snapshot(outside) == before  # nothing written, made or deleted outside
    assert sum(outcomes.values()) == len(CALLS) * ROUNDS
    assert outcomes["ok"] > len(CALLS) * ROUNDS // 10, outcomes  # the tools did run
    assert swapper.swaps > 100, swapper.swaps  # and the race really ran meanwhile
    assert not (ws / "parked").exists() or not (ws / "d").exists()


@pytest.mark.parametrize("kernel", ["openat2", "component walk"])
def test_open_beneath_follows_links_inside_and_refuses_links_out(
    tmp_path: Path, monkeypatch: Any, kernel: str
) -> None:
    if kernel != "openat2":
        monkeypatch.setattr(beneath, "have_openat2", lambda: False)
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x").write_text("x")
    (root / "a" / "lx").symlink_to("x")
    (root / "a" / "one").symlink_to("..")
    (root / "a" / "up").symlink_to("../..")
    (root / "a" / "abs").symlink_to(tmp_path)
    fd = os.open(root, beneath.FOLDER)
    try:
        for inside in ("a/lx", "a/../a/lx", "a/one/a/one/a/x", "./a//x"):
            opened = beneath.open_beneath(fd, inside, os.O_RDONLY)
            assert os.readlink(f"/proc/self/fd/{opened}") == str(root / "a" / "x")
            os.close(opened)
        for outside in ("..", "a/../..", "a/up", "a/up/root/a/x", "a/abs", "a/abs/root/a/x"):
            with pytest.raises(beneath.OutsideError):
                beneath.open_beneath(fd, outside, os.O_RDONLY)
        with pytest.raises(NotADirectoryError):
            beneath.open_beneath(fd, "a/lx/", os.O_RDONLY)
        with pytest.raises(OSError):
            beneath.open_beneath(fd, "a/lx", os.O_RDONLY | os.O_NOFOLLOW)
    finally:
        os.close(fd)
