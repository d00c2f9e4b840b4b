"""Host validation and the security headers for the lean /api/ handler (clawsite.handlers).

The browser stack gets these from Django's SecurityMiddleware, CommonMiddleware and
XFrameOptionsMiddleware; the API skips that stack for speed (their hooks hop threads under
ASGI), so this one async middleware does the same, from the same settings, on every answer,
errors included (it sits outside ApiErrorMiddleware).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import markcoroutinefunction
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse

from ..errors import ApiError


def security_headers(request: HttpRequest, response: HttpResponse) -> None:
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", settings.X_FRAME_OPTIONS)
    if settings.SECURE_REFERRER_POLICY:
        response.headers.setdefault("Referrer-Policy", settings.SECURE_REFERRER_POLICY)
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        response.headers.setdefault(
            "Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY
        )
    response.headers.setdefault("Cache-Control", "no-store")  # answers are per user
    if settings.SECURE_HSTS_SECONDS and request.is_secure():
        hsts = f"max-age={settings.SECURE_HSTS_SECONDS}"
        if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
            hsts += "; includeSubDomains"
        if settings.SECURE_HSTS_PRELOAD:
            hsts += "; preload"
        response.headers.setdefault("Strict-Transport-Security", hsts)


class ApiSecurityMiddleware:
    sync_capable = False
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Awaitable[HttpResponse]]) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        response: HttpResponse
        try:
            request.get_host()  # against DNS rebinding and poisoned absolute URLs
        except DisallowedHost:
            response = ApiError("invalid_args", "The Host header is not allowed here.").response()
        else:
            response = await self.get_response(request)
        security_headers(request, response)
        return response
