"""Who is calling: a Bearer token (agents, scripts) or the session cookie (browsers)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user
from django.utils import timezone

from tools_app.workspace import SAFE_USERNAME

from .models import ApiToken, hash_token

LAST_USED_RESOLUTION = timedelta(minutes=1)


def is_safe_username(username: str) -> bool:
    """Usernames name workspace folders: letters, digits, ``_`` and ``-`` only."""
    return bool(SAFE_USERNAME.match(username))


def bearer_token(headers: Any) -> str | None:
    """The raw token of an ``Authorization: Bearer`` header, '' if malformed, None if absent."""
    value = headers.get("Authorization") or headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def user_for_token(raw: str) -> Any | None:
    """The active user a raw token belongs to, or None. Sync: runs one indexed query."""
    if not raw:
        return None
    token = ApiToken.objects.active().select_related("user").filter(digest=hash_token(raw)).first()
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user


def user_for_session(request: Any) -> Any | None:
    user = get_user(request)
    return user if user.is_authenticated else None
