"""Named queues: which names are valid, and (staff) pausing and resuming them.

A queue exists by use: a task names it. A paused queue keeps accepting tasks; the claim
(``tasks_app.store.claim_sql``) skips it for every worker until it is resumed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from django.conf import settings

from .models import QUEUE_NAME_PATTERN

_QUEUE_NAME = re.compile(QUEUE_NAME_PATTERN)


def queue_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a queue's name here, or None when it can."""
    if not isinstance(name, str) or not _QUEUE_NAME.fullmatch(name):
        return f"{name!r} is not a queue name (letters, digits, _ and -, up to 64 characters)."
    allowed = settings.CLAWSITE_QUEUES
    if allowed and name not in allowed:
        return f"Unknown queue {name!r}; CLAWSITE_QUEUES allows {', '.join(allowed)}."
    return None


def parse_queue_list(names: Iterable[str]) -> list[str]:
    """Queue names from a setting or an option, in order, without repeats; ValueError names
    the first invalid one."""
    queues: list[str] = []
    for name in names:
        if (problem := queue_name_problem(name)) is not None:
            raise ValueError(problem)
        if name not in queues:
            queues.append(name)
    return queues
