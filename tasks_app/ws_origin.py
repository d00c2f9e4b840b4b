"""The Origin rule of cookie-authenticated websocket handshakes: Django's CSRF Origin rule.

A browser sends a page's cookies with a websocket handshake to any site, so a cookie handshake
is accepted only from the site's own origin, compared whole (scheme, host and port) with the
handshake's own ``Host`` (itself one of ``ALLOWED_HOSTS``), or from one of
``CSRF_TRUSTED_ORIGINS``, compared whole too. Channels' ``AllowedHostsOriginValidator`` matched
the Origin's host against ``ALLOWED_HOSTS`` alone: another port of the same host passed, and
``ALLOWED_HOSTS=*`` let any origin in.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http.request import split_domain_port, validate_host


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return {
        name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
    }


def origin_allowed(scope: dict[str, Any]) -> bool:
    headers = _headers(scope)
    origin, host = headers.get("origin", ""), headers.get("host", "")
    if not origin or origin == "null":
        return False
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
    return origin.lower() == f"{scheme}://{host}".lower()


class SameOriginValidator:
    """ASGI middleware: a handshake from another origin is refused (403) before the consumer."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if origin_allowed(scope):
            return await self.inner(scope, receive, send)
        await receive()  # the websocket.connect event
        await send({"type": "websocket.close", "code": 403})
