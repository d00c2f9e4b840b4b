"""What every tool that calls out over HTTP (http_fetch, llm_chat) does with httpx's failures."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from .errors import ToolError


@contextmanager
def retryable_http_failures(timeout_message: str) -> Iterator[None]:
    """Timeouts and transport failures (refused, reset, DNS) become retryable ToolErrors: the
    same call may well succeed on a later attempt. Anything else passes through unchanged."""
    try:
        yield
    except (TimeoutError, httpx.TimeoutException):
        raise ToolError("timeout", timeout_message, retryable=True) from None
    except httpx.TransportError as exc:
        raise ToolError(
            "connection_error", f"{type(exc).__name__}: {exc}", retryable=True
        ) from None
