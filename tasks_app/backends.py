"""ClawSite as a backend of Django's Tasks framework (``django.tasks``).

``@task`` functions of any installed app become ClawSite tasks (tool ``django_task``, source
``django``, no owner) and run on ClawSite's workers (``tasks_app.django_tasks``), with leases,
retries, timeouts, priorities, delays and live updates.

A ``Task`` validates itself against its backend when the module defining it is imported,
possibly while the app registry is still loading: this module and the backend's ``__init__``
touch neither the database nor the models until a task is enqueued or a result read.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import Task, TaskResult
from django.tasks.exceptions import InvalidTask
from django.utils.json import normalize_json

from .queue_names import bad_queue_name

MAX_ATTEMPTS = 100
MAX_TIMEOUT_SECONDS = 86400.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ClawSiteTask(Task):
    """Django's ``Task`` with ClawSite's per-task options, given to ``@task``:
    ``@task(max_attempts=3, timeout=60)``. By default a function runs once (a Python function
    is not assumed idempotent: no retry); ``timeout`` None means ``CLAWSITE_DJANGO_TASK_TIMEOUT``.
    """

    max_attempts: int = 1
    timeout: float | None = None


def json_round_trip(value: Any) -> Any:
    """``value`` as it reads after a real JSON round trip (tuples become lists, keys strings);
    TypeError or ValueError when it has none (Django's ``normalize_json`` rule first, then
    ``json.dumps``, which also refuses NaN and infinities: no JSON column can hold them)."""
    return json.loads(json.dumps(normalize_json(value), allow_nan=False))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class ClawSiteBackend(BaseTaskBackend):
    task_class = ClawSiteTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def validate_task(self, task: Task) -> None:
        super().validate_task(task)
        if (problem := bad_queue_name(task.queue_name)) is not None:
            raise InvalidTask(problem)
        max_attempts = getattr(task, "max_attempts", 1)
        if not _is_number(max_attempts) or max_attempts != int(max_attempts):
            raise InvalidTask(f"max_attempts must be a whole number from 1 to {MAX_ATTEMPTS}.")
        if not 1 <= max_attempts <= MAX_ATTEMPTS:
            raise InvalidTask(f"max_attempts must be a whole number from 1 to {MAX_ATTEMPTS}.")
        timeout = getattr(task, "timeout", None)
        if timeout is not None and not (
            _is_number(timeout) and math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT_SECONDS
        ):
            raise InvalidTask(
                f"timeout must be a number of seconds above 0, up to {MAX_TIMEOUT_SECONDS:g}."
            )

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """One queued ClawSite task, written in the caller's transaction when there is one (a
        rollback leaves no task; the workers hear of it and ``task_enqueued`` is sent once it
        commits), else committed at once. Arguments that do not survive a JSON round trip are
        refused here (TypeError or ValueError), not when the task runs."""
        from . import django_tasks

        self.validate_task(task)
        args, kwargs = json_round_trip(list(args)), json_round_trip(dict(kwargs))
        return django_tasks.enqueue(task, args, kwargs, self)

    def get_result(self, result_id: str) -> TaskResult:
        from . import django_tasks

        return django_tasks.get_result(result_id, self)
