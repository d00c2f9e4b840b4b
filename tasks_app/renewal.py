"""Workers that renew themselves (``CLAWSITE_WORKER_MAX_TASKS``, ``CLAWSITE_WORKER_MAX_MEMORY_MB``).

Past either, the engine stops claiming and asks its process to stop as on SIGTERM (running
tasks finish within the grace period, the rest are handed back without spending an attempt);
then ``runworker`` replaces the process with a fresh one under the same command line through
``os.execv``, which keeps the pid, so a process manager sees one long-lived process. A leaking
tool thus costs one process's memory for a while, never the host's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from django.conf import settings

from .metrics import flush as flush_metrics
from .metrics import record_worker_renewal

logger = logging.getLogger("clawsite.worker")


def resident_mb() -> float:
    """This process's resident set now (not its peak), from /proc (0 where there is none)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


class Renewal:
    """One engine's watch over its own limits."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.kind = ""
        self.requested = asyncio.Event()

    def claims_left(self, claimed: int) -> int | None:
        """How many more tasks this process may claim (None: no cap)."""
        cap = settings.CLAWSITE_WORKER_MAX_TASKS
        return max(0, cap - claimed) if cap else None

    def check_tasks(self, claimed: int) -> bool:
        cap = settings.CLAWSITE_WORKER_MAX_TASKS
        if cap and claimed >= cap:
            self._request("max_tasks", f"claimed {claimed} tasks (CLAWSITE_WORKER_MAX_TASKS={cap})")
        return self.reason is not None

    def check_memory(self) -> bool:
        cap = settings.CLAWSITE_WORKER_MAX_MEMORY_MB
        if cap and (used := resident_mb()) > cap:
            self._request(
                "max_memory",
                f"resident memory {used:.0f} MB > CLAWSITE_WORKER_MAX_MEMORY_MB={cap}",
            )
        return self.reason is not None

    def _request(self, kind: str, reason: str) -> None:
        if self.reason is not None:
            return
        self.kind, self.reason = kind, reason
        logger.warning("worker renews itself: %s; draining, then a fresh process", reason)
        record_worker_renewal(kind)
        self.requested.set()


def replace_process() -> None:
    """Become a fresh process under the same command line and pid (never returns).

    The caller blocks the stop signals first: the blocked mask survives execv, so a signal that
    lands while the fresh process starts up waits, pending, until its handlers are in place."""
    flush_metrics()
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, sys.orig_argv)  # noqa: S606 (the same command, by design)
