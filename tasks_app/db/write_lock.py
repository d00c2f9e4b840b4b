"""The hot path's write lock on SQLite: one writer at a time across the processes."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from django.db import DEFAULT_DB_ALIAS, connections


@contextlib.contextmanager
def write_lock() -> Iterator[None]:
    """Around a write transaction of the hot path, on SQLite: one writer at a time across the
    processes, by a lock file whose waiters wake the moment it is released.

    SQLite's own busy handler polls with sleeps of up to 100 ms; with two worker processes it
    slept so often that two drained at half the rate of one (bench). Elsewhere (PostgreSQL, or
    writers that don't take it) nothing changes: SQLite's locking still guards the data.
    """
    database = sqlite_file()
    if database is None:
        yield
        return
    fd = os.open(f"{database}.writelock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def sqlite_file() -> str | None:
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
