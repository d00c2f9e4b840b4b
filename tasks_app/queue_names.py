"""Which names a queue may have. No model here: the django.tasks backend validates queue names
while the app registry may still be loading."""

from __future__ import annotations

import re
from collections.abc import Iterable

from django.conf import settings

DEFAULT_QUEUE = "default"
# Queue names are safe slugs: they appear in URLs, metric labels and settings lists.
QUEUE_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_QUEUE_NAME = re.compile(QUEUE_NAME_PATTERN)


def bad_queue_name(name: object) -> str | None:
    """Why ``name`` is not a safe queue name, or None when it is."""
    if not isinstance(name, str) or not _QUEUE_NAME.fullmatch(name):
        return f"{name!r} is not a queue name (letters, digits, _ and -, up to 64 characters)."
    return None


def queue_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a queue's name here (see also ``CLAWSITE_QUEUES``), or None."""
    if (problem := bad_queue_name(name)) is not None:
        return problem
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
