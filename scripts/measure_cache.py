"""Measure what the tool cache buys: the time of a call without the cache, of a miss (lookup,
run, store) and of a hit, for search_files over 2,000 files, hash_file of 50 MB and read_file of
several sizes (to place CLAWSITE_CACHE_READ_FILE_MIN_BYTES).

    .venv/bin/python scripts/measure_cache.py [--repeat 7]

Runs in-process against the real Redis (REDIS_URL) under a private key prefix, in a temporary
data folder; the files are in the page cache (each is read once before timing), as a repeated
call would find them. Prints medians in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "clawsite.settings"
os.environ["CLAWSITE_DATA_DIR"] = tempfile.mkdtemp(prefix="clawsite-measure-")
os.environ["CLAWSITE_REDIS_PREFIX"] = f"clawsite-measure-{uuid.uuid4().hex[:8]}"
os.environ["CLAWSITE_CACHE_READ_FILE_MIN_BYTES"] = "0"  # measure every size
os.environ["CLAWSITE_CACHE_RACY_SECONDS"] = "0.05"

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django_redis import get_redis_connection  # noqa: E402

from tools_app.cache import invalidate  # noqa: E402
from tools_app.runner import ToolOwner, run_tool  # noqa: E402

OWNER = ToolOwner(1, "measure")


async def median_ms(
    call: Callable[[], Awaitable[object]], repeat: int, before: Callable[[], object] | None = None
) -> float:
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def prepare(workspace: Path) -> None:
    tree = workspace / "tree"
    for index in range(2000):
        folder = tree / f"d{index // 100:02}"
        folder.mkdir(parents=True, exist_ok=True)
        body = "".join(f"line {n} of file {index}: lorem ipsum dolor sit amet\n" for n in range(40))
        (folder / f"f{index:04}.txt").write_text(body + ("needle\n" if index % 50 == 0 else ""))
    with open(workspace / "big.bin", "wb") as out:
        for _ in range(50):
            out.write(os.urandom(1024 * 1024))
    for size in (4 * 1024, 64 * 1024, 1024 * 1024, 8 * 1024 * 1024):
        (workspace / f"text-{size}.txt").write_text(("abcdefghij" * (size // 10 + 1))[:size])


async def measure(name: str, args: dict[str, Any], repeat: int) -> tuple[float, float, float]:
    async def call() -> object:
        return await run_tool(name, args, OWNER)

    settings.CLAWSITE_CACHE_ENABLED = False
    for _ in range(2):
        await call()  # warm the page cache and the code paths
    uncached = await median_ms(call, repeat)
    settings.CLAWSITE_CACHE_ENABLED = True
    miss = await median_ms(call, repeat, before=lambda: invalidate(name))
    outcome = await run_tool(name, args, OWNER)
    assert outcome.cache_hit, f"{name} was not cached"
    hit = await median_ms(call, repeat)
    return uncached, miss, hit


async def main(repeat: int) -> None:
    workspace = Path(settings.CLAWSITE_WORKSPACE_ROOT) / OWNER.username
    workspace.mkdir(parents=True)
    prepare(workspace)
    await asyncio.sleep(0.1)  # older than the racy window
    cases = [
        ("search_files 2,000 files", "search_files", {"path": "tree", "contains": "needle"}),
        ("hash_file 50 MB", "hash_file", {"path": "big.bin"}),
        *[
            (f"read_file {size // 1024} KB", "read_file", {"path": f"text-{size}.txt"})
            for size in (4 * 1024, 64 * 1024, 1024 * 1024, 8 * 1024 * 1024)
        ],
    ]
    print(f"{'case':28} {'uncached ms':>12} {'miss ms':>9} {'hit ms':>9} {'hit speed-up':>13}")
    for label, name, args in cases:
        uncached, miss, hit = await measure(name, args, repeat)
        print(f"{label:28} {uncached:12.2f} {miss:9.2f} {hit:9.2f} {uncached / hit:12.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    options = parser.parse_args()
    try:
        asyncio.run(main(options.repeat))
    finally:
        client = get_redis_connection("default")
        for key in client.scan_iter(match=f"{settings.REDIS_PREFIX}*", count=1000):
            client.delete(key)
