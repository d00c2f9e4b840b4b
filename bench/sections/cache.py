"""Tool cache: a miss (cache emptied for the tool first) against a hit (the same call again), for
search_files over 2,000 files, hash_file of 50 MB and read_file of 1 MB, through run_tool (the
worker's one entry point, which holds the cache)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from ..env import BenchEnv
from ..harness import Row, Stat
from .common import bench_user

CASES = [
    # tool, args, description, target ratio (miss/hit), target text
    (
        "search_files",
        {"path": "tree", "glob": "*.txt", "contains": "needle"},
        "search_files, 2,000 files",
        10.0,
        ">= 10x",
    ),
    ("hash_file", {"path": "big.bin"}, "hash_file, 50 MB", 10.0, ">= 10x"),
    ("read_file", {"path": "one-mb.txt"}, "read_file, 1 MB", 0.95, "hit never slower (>= ~1.0x)"),
]


def _make_files(root: Path, quick: bool) -> None:
    tree = root / "tree"
    for d in range(40):
        folder = tree / f"dir{d:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for f in range(50):
            text = f"file {d}-{f}\n" + ("lorem ipsum dolor sit amet\n" * 20)
            if f % 10 == 0:
                text += "a needle in the haystack\n"
            (folder / f"f{f:03d}.txt").write_text(text)
    block = os.urandom(1024 * 1024)
    with open(root / "big.bin", "wb") as out:
        for _ in range(50):
            out.write(block)
    (root / "one-mb.txt").write_text(("0123456789abcdef" * 64 + "\n") * 1023)


def run(env: BenchEnv, quick: bool, budget: float) -> list[Row]:
    from django.conf import settings

    from tools_app.registry import get_tool
    from tools_app.runner import ToolOwner, run_tool
    from tools_app.workspace import Workspace

    try:
        from tools_app import cache
    except ImportError:
        cache = None  # type: ignore[assignment]
    user, _ = bench_user()
    owner = ToolOwner(user.id, user.get_username(), user.is_staff)
    root = Workspace.for_user(owner).root
    root.mkdir(parents=True, exist_ok=True)
    _make_files(root, quick)
    # The cache refuses answers that depend on files changed within the racy window: wait it out.
    time.sleep(float(getattr(settings, "CLAWSITE_CACHE_RACY_SECONDS", 0)) + 0.2)
    reps = 3 if quick else 5
    rows = []

    async def timed(name: str, args: dict[str, Any]) -> tuple[float, bool]:
        start = time.perf_counter()
        outcome = await run_tool(name, args, owner, timeout=120)
        return (time.perf_counter() - start) * 1000, outcome.cache_hit

    async def measure() -> None:
        for name, args, label, ratio, target in CASES:
            if get_tool(name) is None or cache is None:
                rows.append(
                    Row(
                        "cache",
                        f"{label}: hit vs miss",
                        None,
                        note="n/a (tool or cache not present)",
                    )
                )
                continue
            misses, hits, hit_flags = [], [], []
            for _ in range(reps):
                cache.invalidate(tool=name)
                misses.append((await timed(name, args))[0])
                for _ in range(5):
                    elapsed, hit = await timed(name, args)
                    hits.append(elapsed)
                    hit_flags.append(hit)
            served = sum(hit_flags)
            note = f"{served} of {len(hit_flags)} repeats served from the cache"
            if not served:
                note += " (not cached: the repeat is another run)"
            rows.append(
                Row(
                    "cache",
                    f"{label}: repeat (hit) vs first call (miss)",
                    Stat.of(hits, "ms"),
                    "miss",
                    Stat.of(misses, "ms"),
                    target,
                    ratio,
                    note=note,
                )
            )

    asyncio.run(measure())
    return rows
