"""Open websockets lose their access as soon as their credential does.

A socket was authorised once, at its handshake. Each one joins its user's access group; a
logout, a token revoked or deleted, and any change or deletion of the user (staff rights,
deactivation, password) send that group a hint, on which each socket checks its credential
again and closes if it no longer holds, or no longer gives the same rights. Hints can be lost,
so each socket also checks every ``CLAWSITE_WS_RECHECK_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user, get_user_model, user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.http import HttpRequest

from .auth import user_for_token
from .db import run_in_db_thread
from .events import send_hint
from .models import ApiToken

CLOSE_CODE = 4403  # in the application range: "your access ended"


def access_group(user_id: int) -> str:
    return f"access.{user_id}"


@dataclass(frozen=True)
class Access:
    """How a socket was authorised, and the rights it was given then."""

    user_id: int
    is_staff: bool
    token: str | None
    session_key: str | None

    @classmethod
    def of(cls, scope: dict[str, Any]) -> Access:
        user = scope["user"]
        session = scope.get("session")
        return cls(
            user_id=user.pk,
            is_staff=user.is_staff,
            token=scope.get("clawsite_token"),
            session_key=getattr(session, "session_key", None) if session is not None else None,
        )

    def holds(self) -> bool:
        """Sync (a query or two): the credential still gives this user the same rights."""
        if self.token is not None:
            user = user_for_token(self.token)
        elif self.session_key is not None:
            request = HttpRequest()
            request.session = import_module(settings.SESSION_ENGINE).SessionStore(self.session_key)
            user = get_user(request)  # checks the session's auth hash and is_active too
        else:
            return False
        return bool(
            user is not None
            and user.is_authenticated
            and user.pk == self.user_id
            and user.is_staff == self.is_staff
        )


class AccessCheckedMixin:
    """For websocket consumers: call ``watch_access()`` once accepted, ``unwatch_access()`` on
    disconnect; the socket closes with ``CLOSE_CODE`` when its access ends."""

    access: Access | None = None
    _recheck: asyncio.Task[None] | None = None

    async def watch_access(self) -> None:
        self.access = Access.of(self.scope)  # type: ignore[attr-defined]
        await self.channel_layer.group_add(access_group(self.access.user_id), self.channel_name)  # type: ignore[attr-defined]
        self._recheck = asyncio.create_task(self._recheck_every())

    async def unwatch_access(self) -> None:
        if self._recheck is not None:
            self._recheck.cancel()
        if self.access is not None:
            await self.channel_layer.group_discard(  # type: ignore[attr-defined]
                access_group(self.access.user_id),
                self.channel_name,  # type: ignore[attr-defined]
            )

    async def access_changed(self, message: dict[str, Any]) -> None:
        ended = message.get("ended_session")
        if self.access is not None and ended and ended == self.access.session_key:
            await self._end()
        else:
            await self._check()

    async def _recheck_every(self) -> None:
        while True:
            await asyncio.sleep(settings.CLAWSITE_WS_RECHECK_SECONDS)
            await self._check()

    async def _check(self) -> None:
        if self.access is not None and not await run_in_db_thread(self.access.holds):
            await self._end()

    async def _end(self) -> None:
        self.access = None
        with contextlib.suppress(Exception):  # already closing
            await self.close(code=CLOSE_CODE)  # type: ignore[attr-defined]


def access_changed(user_id: int, ended_session: str | None = None) -> None:
    """Tell ``user_id``'s sockets to check their access (after the commit that changed it)."""
    message: dict[str, Any] = {"type": "access.changed"}
    if ended_session:
        message["ended_session"] = ended_session
    transaction.on_commit(lambda: send_hint(access_group(user_id), message))


@receiver(user_logged_out)
def _logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        access_changed(user.pk, getattr(getattr(request, "session", None), "session_key", None))


@receiver(post_save, sender=ApiToken)
@receiver(post_delete, sender=ApiToken)
def _token_changed(sender: Any, instance: ApiToken, **kwargs: Any) -> None:
    if kwargs.get("signal") is post_delete or instance.revoked_at is not None:
        access_changed(instance.user_id)


def _user_changed(sender: Any, instance: Any, **kwargs: Any) -> None:
    if not kwargs.get("created"):
        access_changed(instance.pk)


post_save.connect(_user_changed, sender=get_user_model(), dispatch_uid="ws_access_user_saved")
post_delete.connect(_user_changed, sender=get_user_model(), dispatch_uid="ws_access_user_gone")
