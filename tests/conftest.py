from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.test import AsyncClient

from tasks_app.models import ApiToken

from .tool_helpers import prepare_workspace


@pytest.fixture(autouse=True)
def _workspace_root(tmp_path: Path, settings: Any) -> None:
    settings.CLAWSITE_WORKSPACE_ROOT = tmp_path / "workspaces"


@pytest.fixture
def ws(settings: Any) -> Path:
    """Alice's workspace, created, for the in-process tool tests (tests/tool_helpers.py); a
    module that needs more settings overrides it, asking for this one by the same name."""
    return prepare_workspace(settings)


def _persona(django_user_model: Any, username: str, staff: bool = False) -> Any:
    user = django_user_model.objects.create_user(
        username, password="pw-" + username, is_staff=staff, is_superuser=staff
    )
    user.raw_token = ApiToken.issue(user)[1]
    return user


@pytest.fixture
def alice(transactional_db: None, django_user_model: Any) -> Any:
    return _persona(django_user_model, "alice")


@pytest.fixture
def bob(transactional_db: None, django_user_model: Any) -> Any:
    return _persona(django_user_model, "bob")


@pytest.fixture
def carol(transactional_db: None, django_user_model: Any) -> Any:
    """Staff."""
    return _persona(django_user_model, "carol", staff=True)


def bearer(user: Any, **kwargs: Any) -> AsyncClient:
    # AsyncClient(headers=...) sends "Http-Authorization" (it applies WSGI names to ASGI
    # scopes); a default named AUTHORIZATION becomes the real header.
    return AsyncClient(AUTHORIZATION=f"Bearer {user.raw_token}", **kwargs)


@pytest.fixture
def as_alice(alice: Any) -> AsyncClient:
    return bearer(alice)


@pytest.fixture
def as_bob(bob: Any) -> AsyncClient:
    return bearer(bob)


@pytest.fixture
def as_carol(carol: Any) -> AsyncClient:
    return bearer(carol)


@pytest.fixture
def stack(tmp_path: Path) -> Any:
    """A migrated stack of real processes (tests/stack.py), stopped after the test."""
    from tests.stack import Stack

    stack = Stack(tmp_path / "stack")
    stack.migrate()
    yield stack
    stack.stop()


@pytest.fixture(scope="session", autouse=True)
def _drop_redis_keys() -> Any:
    """Leave the shared Redis as we found it: remove this run's keys (SCAN, never KEYS)."""
    yield
    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter(match=f"{settings.REDIS_PREFIX}*", count=1000):
        client.delete(key)


@pytest.fixture(scope="session", autouse=True)
def _db_threads(django_db_setup: Any, django_db_blocker: Any) -> Any:
    """Close the process's database threads before the test database is dropped."""
    yield
    import asyncio

    from asgiref.sync import sync_to_async
    from django.db import connections

    from tasks_app.db import shutdown_db_threads

    with django_db_blocker.unblock():
        shutdown_db_threads()
        # The async ORM calls of the tests ran in asgiref's shared thread: close its connection.
        asyncio.run(sync_to_async(connections.close_all)())
