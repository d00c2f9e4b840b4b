"""Blocking work of tools, off the event loop: short work in asyncio's default threads, long
work in threads of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


async def offload(fn: Callable[..., Any], *args: Any) -> Any:
    """Run short blocking work (stat, listdir, realpath, a Redis round trip) off the event loop."""
    return await asyncio.to_thread(fn, *args)


_long_jobs: ThreadPoolExecutor | None = None


async def offload_long(fn: Callable[..., Any], *args: Any) -> Any:
    """Run long blocking work (a search, a hash of a large file) off the event loop, in threads
    of its own: a few slow tools must not take every thread of the default pool, where short
    work (aiofiles, ``offload``) of the other tasks waits."""
    global _long_jobs
    if _long_jobs is None:
        _long_jobs = ThreadPoolExecutor(max_workers=32, thread_name_prefix="clawsite-tool")
    return await asyncio.get_running_loop().run_in_executor(_long_jobs, fn, *args)
