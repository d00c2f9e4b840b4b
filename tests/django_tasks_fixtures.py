"""``@task`` functions for the django.tasks tests, in the shapes of Django's own ``tests/tasks``
fixtures (noop, failing, async, context, complex return value), written anew. The worker
processes import them by module path, as they would an installed app's ``tasks.py``.

Functions that must leave a trace the database does not hold (how often a body really ran,
which signals a worker sent) append lines to files named in their arguments or in
``CLAWSITE_TEST_SIGNALS_FILE``.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from django.dispatch import receiver
from django.tasks import TaskContext, task
from django.tasks.signals import task_enqueued, task_finished, task_started


@task
def noop_task(*args: Any, **kwargs: Any) -> None:
    return None


@task
async def noop_task_async(*args: Any, **kwargs: Any) -> None:
    return None


@task
def calculate_meaning_of_life() -> int:
    return 42


@task
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0.01)
    return a + b


@task
def failing_task_value_error() -> None:
    raise ValueError("This Task failed due to ValueError")


@task
async def failing_task_async() -> None:
    raise KeyError("missing")


@task
def complex_return_value() -> Any:
    # A real JSON round trip: tuples become lists, keys strings.
    return {"tuple": (1, 2), 3: "three", "nested": [{"x": None, "y": True}], "text": "é"}


@task
def echo(*args: Any, **kwargs: Any) -> Any:
    return {"args": list(args), "kwargs": kwargs}


@task(takes_context=True)
def get_context(context: TaskContext) -> dict[str, Any]:
    return {"attempt": context.attempt, "id": context.task_result.id}


@task(takes_context=True, max_attempts=3)  # type: ignore[call-overload]  # ClawSite's options
def fails_until_third_attempt(context: TaskContext) -> int:
    if context.attempt < 3:
        raise RuntimeError(f"attempt {context.attempt} fails")
    return context.attempt


@task(max_attempts=2)  # type: ignore[call-overload]  # ClawSite's options
def always_fails_twice() -> None:
    raise ValueError("again")


@task(timeout=1)  # type: ignore[call-overload]  # ClawSite's options
def sleeps_past_its_timeout(marker: str) -> str:
    """Blocks its thread past the timeout, then leaves a mark: its late return must be dropped."""
    time.sleep(3)
    Path(marker).write_text("returned late")
    return "late"


@task(timeout=1)  # type: ignore[call-overload]  # ClawSite's options
async def sleeps_past_its_timeout_async() -> str:
    await asyncio.sleep(30)
    return "never"


@task
def append_line(path: str, text: str) -> None:
    with open(path, "a") as out:
        out.write(text + "\n")


@task(takes_context=True)
def blocks_on_first_attempt(context: TaskContext, ledger: str) -> str:
    """First attempt: record the start and hang (the test kills its worker). Later: finish."""
    with open(ledger, "a") as out:
        out.write(f"start {context.attempt} {os.getpid()}\n")
    if context.attempt == 1:
        time.sleep(120)
    with open(ledger, "a") as out:
        out.write(f"end {context.attempt} {os.getpid()}\n")
    return "finished"


@task
def count_users() -> int:
    """Uses the ORM from its worker thread (a connection of its own)."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.count()


def _signal_log(name: str, task_result: Any) -> None:
    path = os.environ.get("CLAWSITE_TEST_SIGNALS_FILE")
    if path:
        with open(path, "a") as out:
            out.write(f"{name} {task_result.id} {task_result.status} {os.getpid()}\n")


@receiver(task_enqueued)
def _on_enqueued(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _signal_log("enqueued", task_result)


@receiver(task_started)
def _on_started(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _signal_log("started", task_result)


@receiver(task_finished)
def _on_finished(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _signal_log("finished", task_result)
