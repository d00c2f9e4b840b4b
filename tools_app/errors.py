"""The tools' one error type, and pydantic's validation errors as the API's details."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


class ToolError(Exception):
    """A failure while running a tool, with a stable snake_case ``type`` for ``error.type``.

    ``retryable`` failures (timeouts, connection errors) are tried again up to ``max_attempts``.
    """

    def __init__(self, type: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.type = type
        self.message = message
        self.retryable = retryable

    def as_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message}


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as JSON-able details: where, and what is wrong."""
    return [
        {"loc": ".".join(str(part) for part in error["loc"]), "message": error["msg"]}
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
