"""``python -m bench [--quick] [--only store,http,...] [--keep]``: run the suite, print the table.

Run from the bench environment (.venv-bench, made by ``make bench``), which holds the peers.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from .env import ROOT, BenchEnv
from .harness import Row, table

# Section name -> time budget in seconds (full, quick). A section past its budget stops early.
SECTIONS = {
    "store": (180, 60),
    "http": (150, 60),
    "e2e": (420, 150),
    "cache": (120, 45),
    "live": (90, 40),
    "memory": (240, 60),
    "mcp": (120, 45),
    "django": (420, 150),
}


def machine() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_kib / 1024 / 1024:.1f} GiB RAM, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}; load average at start "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    names = [
        "django",
        "channels",
        "channels-redis",
        "daphne",
        "redis",
        "celery",
        "dramatiq",
        "huey",
        "django-tasks-db",
        "websockets",
    ]
    found = []
    for name in names:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (absent)")
    import sqlite3

    import redis

    server = redis.Redis(host="127.0.0.1").info("server")["redis_version"]
    return ", ".join(found) + f", SQLite {sqlite3.sqlite_version}, Redis server {server}"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller counts, a few minutes")
    parser.add_argument(
        "--only", default="", help="comma-separated sections: " + ",".join(SECTIONS)
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the data folder (logs) afterwards"
    )
    parser.add_argument(
        "--out",
        default=str(ROOT / "artifacts" / "bench-latest.md"),
        help="write the table here too",
    )
    options = parser.parse_args()
    chosen = [s for s in options.only.split(",") if s] or list(SECTIONS)
    unknown = set(chosen) - SECTIONS.keys()
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")

    env = BenchEnv(keep=options.keep)
    started = time.monotonic()
    header = [
        f"ClawSite bench ({'quick' if options.quick else 'full'}), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"machine: {machine()}",
    ]
    rows: list[Row] = []
    try:
        env.setup_django()
        header.append(f"versions: {versions()}")
        print("\n".join(header), flush=True)
        for name in chosen:
            budget = SECTIONS[name][1 if options.quick else 0]
            print(f"\n== {name} (budget {budget} s)", flush=True)
            section_start = time.monotonic()
            module = importlib.import_module(f"bench.sections.{name}")
            try:
                section_rows = module.run(env, options.quick, budget)
            except Exception as error:
                traceback.print_exc()
                section_rows = [
                    Row(
                        name,
                        "section failed",
                        None,
                        note=f"error: {type(error).__name__}: {error}"[:200],
                    )
                ]
            rows += section_rows
            print(table(section_rows), flush=True)
            print(f"({name}: {time.monotonic() - section_start:.0f} s)", flush=True)
    finally:
        env.close()
    elapsed = time.monotonic() - started
    report = "\n".join(
        [*header, "", table(rows), "", f"total {elapsed:.0f} s; data folder {env.data_dir}"]
    )
    print("\n" + report)
    out = Path(options.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
