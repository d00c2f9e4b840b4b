"""A leaner Django handler for the JSON API.

Under ASGI each ``MiddlewareMixin`` middleware runs its request and response hooks in a thread
(two hops each), so the browser's stack (sessions, CSRF, messages, clickjacking, static files)
costs an API call more than the call itself. API views authenticate on their own (Bearer or the
session cookie, with the CSRF check for sessions: ``tasks_app.api.base``), so /api/ requests go
through only the middleware that checks the Host and sets the security headers, and the one
that shapes their errors.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler

API_MIDDLEWARE = [
    "tasks_app.api.security.ApiSecurityMiddleware",
    "tasks_app.api.middleware.ApiErrorMiddleware",
]


class ApiASGIHandler(ASGIHandler):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Without Django's per-request ThreadSensitiveContext: it gives each request a thread of
        # its own for thread-sensitive sync code, started and joined per request (a tenth of an
        # API call's time under load, daphne profile). API views run their database work on the
        # process's database threads (tasks_app.db); what is left thread-sensitive (Django's
        # request signals, response.close) runs in asgiref's one shared sync thread.
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)

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


def route_path(path: str, app: Any, rest: Any) -> Any:
    """An ASGI app sending exactly ``path`` to ``app`` (MCP's one endpoint) and the rest to
    ``rest``. (Channels' URLRouter raises on paths it has no route for.)"""

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        target = app if scope["path"] == path else rest
        await target(scope, receive, send)

    return application
