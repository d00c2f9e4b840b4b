"""Websocket authentication: the Bearer header (agents) or the session cookie (browsers)."""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddlewareStack
from django.contrib.auth.models import AnonymousUser

from .auth import bearer_token, user_for_token
from .db import run_in_db_thread
from .ws_origin import SameOriginValidator


class WebsocketAuthMiddleware:
    """Bearer handshakes carry no ambient credential, so they need (and send) no Origin; cookie
    handshakes must come from the site's own origin, against cross-site websocket hijacking
    (tasks_app.ws_origin)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.cookie_app = SameOriginValidator(AuthMiddlewareStack(inner))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope["headers"]
        }
        raw = bearer_token(headers)
        if raw is None:
            return await self.cookie_app(scope, receive, send)
        user = await run_in_db_thread(user_for_token, raw)
        scope = {**scope, "user": user or AnonymousUser(), "clawsite_token": raw}
        return await self.inner(scope, receive, send)
