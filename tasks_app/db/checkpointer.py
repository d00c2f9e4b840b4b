"""SQLite's write-ahead log, checkpointed off the hot path by a thread of its own."""

from __future__ import annotations

import logging
import sqlite3
import threading
import urllib.parse

from .write_lock import sqlite_file

logger = logging.getLogger(__name__)


class Checkpointer(threading.Thread):
    """SQLite only: copies the write-ahead log into the database file every
    ``CHECKPOINT_SECONDS``, on a connection of its own, off the hot path.

    Left to SQLite, the commit that grows the log past 1,000 pages runs the checkpoint itself,
    fsyncs included, while its caller waits (and, behind the write lock, every other writer):
    the stalls behind the bench's worst finish-to-frame latencies. Checkpointing this often
    keeps the log short, so that never happens; SQLite's own stays as the fallback.
    """

    CHECKPOINT_SECONDS = 0.5
    _running: Checkpointer | None = None

    def __init__(self, path: str) -> None:
        super().__init__(name="clawsite-checkpoint", daemon=True)
        self.path = path
        self.stopping = threading.Event()

    @classmethod
    def start_for_process(cls) -> None:
        path = sqlite_file()
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
