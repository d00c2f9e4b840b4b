"""The process's database access off the event loop, one module per job:

- ``threads``: the long-lived database threads (``run_in_db_thread``, ``db_thread_task``);
- ``write_lock``: one SQLite writer at a time across processes;
- ``group_commit``: concurrent calls in one transaction (``GroupCommit``);
- ``checkpointer``: SQLite's write-ahead log checkpointed off the hot path.
"""

from .group_commit import GroupCommit
from .threads import db_thread_task, run_in_db_thread, shutdown_db_threads
from .write_lock import write_lock

__all__ = [
    "GroupCommit",
    "db_thread_task",
    "run_in_db_thread",
    "shutdown_db_threads",
    "write_lock",
]
