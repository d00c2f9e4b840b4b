"""A leaner Django handler for the JSON API.

Under ASGI each ``MiddlewareMixin`` middleware runs its request and response hooks in a thread
(two hops each), so the browser's stack (sessions, CSRF, messages, clickjacking, static files)
costs an API call more than the call itself. API views authenticate on their own (Bearer or the
session cookie, with the CSRF check for sessions: ``tasks_app.api.base``), so /api/ requests go
through only the middleware that shapes their errors.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler

API_MIDDLEWARE = ["tasks_app.api.errors.ApiErrorMiddleware"]


class ApiASGIHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        # Django builds the chain from settings.MIDDLEWARE; swap it in for this one build, at
        # start-up, before any request runs.
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = API_MIDDLEWARE
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


def route_api(api: Any, site: Any, prefix: str = "/api/") -> Any:
    """An ASGI app sending ``prefix`` paths to ``api`` and the rest to ``site``."""

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        target = api if scope["path"].startswith(prefix) else site
        await target(scope, receive, send)

    return application
