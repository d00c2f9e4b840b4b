"""Who is calling: a Bearer token (agents, scripts) or the session cookie (browsers)."""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user, get_user_model
from django.db import connection
from django.utils import timezone

from tools_app.workspace import SAFE_USERNAME

from .models import ApiToken, hash_token

LAST_USED_RESOLUTION = timedelta(minutes=1)
_LAST_USED = ApiToken._meta.get_field("last_used_at")


def is_safe_username(username: str) -> bool:
    """Usernames name workspace folders: letters, digits, ``_`` and ``-`` only."""
    return bool(SAFE_USERNAME.fullmatch(username))


def bearer_token(headers: Any) -> str | None:
    """The raw token of an ``Authorization: Bearer`` header, '' if malformed, None if absent."""
    value = headers.get("Authorization") or headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def user_for_token(raw: str) -> Any | None:
    """The active user a raw token belongs to, or None. Sync: one primary-key-like query.

    Raw SQL: every API request runs it, and compiling the equivalent ORM query (a join, two
    filters) was a third of a submit's time in daphne (profile)."""
    if not raw:
        return None
    now = timezone.now()
    stale_before = _LAST_USED.get_db_prep_value(now - LAST_USED_RESOLUTION, connection)
    users = list(get_user_model().objects.raw(_token_sql(), [stale_before, hash_token(raw)]))
    if not users:
        return None
    user = users[0]
    if user.token_stale:  # type: ignore[attr-defined]  # columns of the raw query
        ApiToken.objects.filter(pk=user.token_id).update(last_used_at=now)  # type: ignore[attr-defined]
    return user


@functools.cache
def _token_sql() -> str:
    """The user of an unrevoked token by its digest, if active; and whether the token's
    ``last_used_at`` is older than ``LAST_USED_RESOLUTION`` (then it is refreshed)."""
    quote = connection.ops.quote_name
    users, tokens = get_user_model()._meta.db_table, ApiToken._meta.db_table
    return (
        f"SELECT u.*, t.{quote('id')} AS token_id, "
        f"(t.{quote('last_used_at')} IS NULL OR t.{quote('last_used_at')} < %s) AS token_stale "
        f"FROM {quote(tokens)} t JOIN {quote(users)} u ON u.{quote('id')} = t.{quote('user_id')} "
        f"WHERE t.{quote('digest')} = %s AND t.{quote('revoked_at')} IS NULL "
        f"AND u.{quote('is_active')}"
    )


def user_for_session(request: Any) -> Any | None:
    user = get_user(request)
    return user if user.is_authenticated else None
