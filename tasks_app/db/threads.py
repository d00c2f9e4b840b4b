"""The process's own database threads.

Under daphne every request's sync code runs in a thread of its own, so a thread-local Django
connection there is opened per request (and, if kept, leaks). The hot paths (the API, the worker
loop) instead send their queries to a few long-lived threads owned by this module, whose
connections stay open for the life of the process: no connection, no pragmas per request.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from django.conf import settings
from django.db import DatabaseError, connection

from .checkpointer import Checkpointer

P = ParamSpec("P")
T = TypeVar("T")

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _get_executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(
                    max_workers=settings.CLAWSITE_DB_THREADS, thread_name_prefix="clawsite-db"
                )
                Checkpointer.start_for_process()
    return _executor


def _call(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except DatabaseError:
        # A broken connection (server restart, network) is dropped so the next call reconnects;
        # a healthy one stays open.
        if connection.connection is not None and not connection.is_usable():
            connection.close()
        raise


async def run_in_db_thread(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run the sync ``fn`` (ORM or raw SQL) on one of the process's database threads."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(
        _get_executor(), _call, functools.partial(fn, *args, **kwargs)
    )


def db_thread_task(fn: Callable[P, T]) -> Callable[P, asyncio.Future[T]]:
    """Decorator: an async twin of ``fn`` that runs it on a database thread."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        return await run_in_db_thread(fn, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def shutdown_db_threads() -> None:
    """Close the threads' connections and stop them (tests, worker exit)."""
    global _executor
    Checkpointer.stop_for_process()
    with _executor_lock:
        executor, _executor = _executor, None
    if executor is not None:
        # The barrier makes each thread take exactly one of the close calls.
        threads = executor._max_workers
        barrier = threading.Barrier(threads)

        def close_own_connection() -> None:
            barrier.wait(timeout=10)
            connection.close()

        for future in [executor.submit(close_own_connection) for _ in range(threads)]:
            future.result()
        executor.shutdown(wait=True)
    # On PostgreSQL, close() hands a connection back to the pool; the pool keeps it open.
    if hasattr(connection, "close_pool"):
        connection.close_pool()
