"""The contract's error: ``{"error": {"code", "message", "details"}}`` with its HTTP status."""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse

STATUS_BY_CODE = {
    "invalid_json": 400,
    "invalid_args": 400,
    "unknown_tool": 400,
    "invalid_batch": 400,
    "unauthenticated": 401,
    "tool_disabled": 403,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "payload_too_large": 413,
    "rate_limited": 429,
    "queue_full": 429,
    "internal_error": 500,
    "unavailable": 503,
}


class ApiError(Exception):
    def __init__(
        self, code: str, message: str, details: Any = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.status = STATUS_BY_CODE[code]
        # Whole seconds until the caller may try again (429s: the Retry-After header).
        self.retry_after = retry_after

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}

    def response(self) -> JsonResponse:
        response = JsonResponse({"error": self.as_dict()}, status=self.status)
        if self.status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="clawsite"'
        if self.retry_after is not None:
            response["Retry-After"] = str(self.retry_after)
        return response
