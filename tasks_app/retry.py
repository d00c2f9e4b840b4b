"""Whether a failed attempt is tried again (``status_after_failure``, the one rule), and when:
exponential backoff with jitter."""

from __future__ import annotations

import random
from datetime import timedelta

from django.conf import settings

from .models import Task, TaskStatus


def status_after_failure(task: Task, *, retryable: bool) -> str:
    """The status of a task whose current attempt failed: ``queued`` again while the failure is
    retryable and the task has attempts left, else ``failed``. A lost attempt (its worker died)
    counts like any other, so a task that kills its worker every time still ends."""
    if retryable and task.attempts < task.max_attempts:
        return TaskStatus.QUEUED
    return TaskStatus.FAILED


def backoff(attempt: int) -> timedelta:
    """The wait after failed attempt ``attempt`` (1-based): a random point in the upper half of
    base, 2 base, 4 base, ... capped at the maximum. The jitter spreads the retries of tasks that
    failed together (say, one endpoint went down) so they do not come back as one burst; the lower
    bound keeps a retry from coming back at once."""
    base = settings.CLAWSITE_RETRY_BASE_SECONDS
    ceiling = min(settings.CLAWSITE_RETRY_MAX_SECONDS, base * 2 ** max(0, attempt - 1))
    jitter = random.uniform(ceiling / 2, ceiling)  # noqa: S311 (spreads retries, not a secret)
    return timedelta(seconds=jitter)
