"""The no-op Django task the bench drains: on ClawSite's backend (``noop``) and, for the
reference, on django-tasks-db's (``db_noop``, the ``db`` backend of bench/settings.py)."""

from __future__ import annotations

from django.tasks import task


@task
def noop(n: int = 0) -> None:
    return None


@task(backend="db")
def db_noop(n: int = 0) -> None:
    return None


@task
async def anoop(n: int = 0) -> None:
    return None
