"""When a failed attempt is tried again: exponential backoff with full jitter."""

from __future__ import annotations

import random
from datetime import timedelta

BASE_SECONDS = 1.0
MAX_SECONDS = 300.0


def backoff(attempt: int) -> timedelta:
    """The wait before attempt ``attempt + 1``: up to 1 s, 2 s, 4 s, ... capped at 5 minutes."""
    ceiling = min(MAX_SECONDS, BASE_SECONDS * 2 ** max(0, attempt - 1))
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))
