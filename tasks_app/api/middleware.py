"""Every 4xx/5xx under /api/ in the contract's shape, whoever produced it.

Views raise ``ApiError``; this middleware also rewrites what Django itself answers in HTML or
empty (the resolver's 404, 405s, an oversized body, an unexpected exception) under /api/.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse

from ..errors import ApiError

logger = logging.getLogger(__name__)

_REWRITES = {
    404: ApiError("not_found", "No such resource."),
    405: ApiError("method_not_allowed", "This method is not allowed here."),
    413: ApiError("payload_too_large", "The request body is too large."),
}


class ApiErrorMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(
        self, get_response: Callable[[HttpRequest], Awaitable[HttpResponse] | HttpResponse]
    ):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):  # type: ignore[no-untyped-def]
        if self.is_async:
            return self._acall(request)
        return self._rewrite(request, self.get_response(request))  # type: ignore[arg-type]

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        return self._rewrite(request, await self.get_response(request))  # type: ignore[misc]

    def _rewrite(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if not request.path.startswith("/api/") or response.get("Content-Type", "").startswith(
            "application/json"
        ):
            return response
        if response.status_code in _REWRITES:
            error = _REWRITES[response.status_code]
            new = error.response()
            if response.status_code == 405 and response.has_header("Allow"):
                new["Allow"] = response["Allow"]
            return new
        if response.status_code >= 500:
            return ApiError("internal_error", "Internal server error.").response()
        if response.status_code >= 400:
            return ApiError("invalid_args", "The request was not understood.").response()
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path.startswith("/api/"):
            return None
        if isinstance(exception, RequestDataTooBig):
            return _REWRITES[413].response()
        logger.exception("unhandled error on %s", request.path)
        return ApiError("internal_error", "Internal server error.").response()
