"""The process's own database threads.

Under daphne every request's sync code runs in a thread of its own, so a thread-local Django
connection there is opened per request (and, if kept, leaks). The hot paths (the API, the worker
loop) instead send their queries to a few long-lived threads owned by this module, whose
connections stay open for the life of the process: no connection, no pragmas per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import sqlite3
import threading
import urllib.parse
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections

logger = logging.getLogger(__name__)

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
                _Checkpointer.start_for_process()
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


@contextlib.contextmanager
def write_lock() -> Iterator[None]:
    """Around a write transaction of the hot path, on SQLite: one writer at a time across the
    processes, by a lock file whose waiters wake the moment it is released.

    SQLite's own busy handler polls with sleeps of up to 100 ms; with two worker processes it
    slept so often that two drained at half the rate of one (bench). Elsewhere (PostgreSQL, or
    writers that don't take it) nothing changes: SQLite's locking still guards the data.
    """
    database = _sqlite_file()
    if database is None:
        yield
        return
    fd = os.open(f"{database}.writelock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _sqlite_file() -> str | None:
    """The database's file when it is a SQLite file (not PostgreSQL, not in memory)."""
    database = connections[DEFAULT_DB_ALIAS].settings_dict
    name = str(database["NAME"])
    if (
        not database["ENGINE"].endswith("sqlite3")
        or name.startswith(":memory:")
        or "mode=memory" in name
    ):
        return None
    return name


class GroupCommit[Item, Result]:
    """Calls made at the same moment, run together: ``await group(item)`` hands ``item`` to
    ``run_many(items) -> results`` (sync, on a database thread, one transaction), with every
    item that arrived while the previous group was in the database.

    The first call goes at once (no added latency when alone); under load, N concurrent single
    submits cost one commit and one thread round trip instead of N. ``run_many`` returns one
    result per item; an exception there is raised to that item's caller only.
    """

    def __init__(self, run_many: Callable[[list[Item]], list[Result | Exception]]) -> None:
        self.run_many = run_many
        # Per event loop (daphne has one; tests make one per test).
        self._queues: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, list[tuple[Item, asyncio.Future[Result]]]
        ] = weakref.WeakKeyDictionary()
        self._draining: set[asyncio.Task[None]] = set()

    async def __call__(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = []
            drain = loop.create_task(self._drain(loop, queue))
            self._draining.add(drain)
            drain.add_done_callback(self._draining.discard)
        queue.append((item, future))
        return await future

    async def _drain(
        self, loop: asyncio.AbstractEventLoop, queue: list[tuple[Item, asyncio.Future[Result]]]
    ) -> None:
        try:
            while queue:
                group = queue[:]
                del queue[:]
                try:
                    results = await run_in_db_thread(self.run_many, [item for item, _ in group])
                except Exception as error:  # the whole group failed (database away): tell each
                    results = [error] * len(group)
                for (_, future), result in zip(group, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            if self._queues.get(loop) is queue:
                del self._queues[loop]
            for _, future in queue:  # cancelled mid-way (loop closing): nobody waits forever
                if not future.done():
                    future.cancel()


class _Checkpointer(threading.Thread):
    """SQLite only: copies the write-ahead log into the database file every
    ``CHECKPOINT_SECONDS``, on a connection of its own, off the hot path.

    Left to SQLite, the commit that grows the log past 1,000 pages runs the checkpoint itself,
    fsyncs included, while its caller waits (and, behind the write lock, every other writer):
    the stalls behind the bench's worst finish-to-frame latencies. Checkpointing this often
    keeps the log short, so that never happens; SQLite's own stays as the fallback.
    """

    CHECKPOINT_SECONDS = 0.5
    _running: _Checkpointer | None = None

    def __init__(self, path: str) -> None:
        super().__init__(name="clawsite-checkpoint", daemon=True)
        self.path = path
        self.stopping = threading.Event()

    @classmethod
    def start_for_process(cls) -> None:
        path = _sqlite_file()
        if path is None or cls._running is not None:
            return
        cls._running = cls(path)
        cls._running.start()

    @classmethod
    def stop_for_process(cls) -> None:
        running, cls._running = cls._running, None
        if running is not None:
            running.stopping.set()
            running.join(timeout=10)

    def run(self) -> None:
        try:  # mode=rw: never create the file (Django's connections do, with the schema)
            uri = f"file:{urllib.parse.quote(self.path)}?mode=rw"
            database = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
        except sqlite3.Error as error:
            logger.warning("SQLite checkpoints off: cannot open %s: %s", self.path, error)
            return
        try:
            database.execute("PRAGMA synchronous=NORMAL")
            while not self.stopping.wait(self.CHECKPOINT_SECONDS):
                try:
                    # PASSIVE: copies what no reader still needs; never waits for, nor blocks,
                    # the writers.
                    database.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as error:
                    logger.warning("SQLite checkpoint failed: %s", error)
        finally:
            database.close()


def shutdown_db_threads() -> None:
    """Close the threads' connections and stop them (tests, worker exit)."""
    global _executor
    _Checkpointer.stop_for_process()
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
