"""Login throttling (django-axes), in-process; the same in Chromium: tests/test_browser.py."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import Client

pytestmark = pytest.mark.django_db(transaction=True)


def sign_in(client: Client, password: str) -> Any:
    return client.post("/login/", {"username": "alice", "password": password})


def test_repeated_failures_lock_the_username_out(alice: Any) -> None:
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert sign_in(client, "wrong").status_code == 200  # the form again
    assert sign_in(client, "wrong").status_code == 429  # the limit reached: locked
    locked = sign_in(client, "pw-alice")  # even the right password
    assert locked.status_code == 429
    assert (
        settings.SESSION_COOKIE_NAME not in locked.cookies
        or not locked.cookies[settings.SESSION_COOKIE_NAME].value
    )
    assert sign_in(Client(), "pw-alice").status_code == 429  # per username and address


def test_a_success_before_the_limit_resets_the_count(bob: Any) -> None:
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        client.post("/login/", {"username": "bob", "password": "wrong"})
    assert client.post("/login/", {"username": "bob", "password": "pw-bob"}).status_code == 302
