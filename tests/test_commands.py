from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from tasks_app.models import ApiToken, hash_token

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: str) -> str:
    out = StringIO()
    call_command("create_api_token", *args, stdout=out)
    return out.getvalue()


def test_create_api_token_creates_the_user_and_prints_the_token_last() -> None:
    output = run("dave")
    raw = output.strip().splitlines()[-1]
    user = get_user_model().objects.get(username="dave")
    assert not user.has_usable_password() and not user.is_staff
    assert ApiToken.objects.get(user=user).digest == hash_token(raw)


def test_staff_flag_and_a_second_token_for_an_existing_user(alice: Any) -> None:
    raw = run("alice", "--staff").strip().splitlines()[-1]
    alice.refresh_from_db()
    assert alice.is_staff and alice.is_superuser and alice.has_usable_password()
    assert ApiToken.objects.filter(user=alice).count() == 2
    assert ApiToken.objects.filter(digest=hash_token(raw), user=alice).exists()


@pytest.mark.parametrize("name", ["..", "a.b", "x/y", "", "é"])
def test_unsafe_usernames_are_refused(name: str) -> None:
    with pytest.raises(CommandError):
        run(name)
    assert not get_user_model().objects.exists()
