"""llm_chat: one chat completion from an OpenAI-compatible endpoint, streamed.

POST ``{base_url}/chat/completions`` of an endpoint of the pool (tools_app.llm_pool: weighted,
limited, failing over, behind circuit breakers) with ``stream: true``; the server answers
Server-Sent Events (``data: {chunk}`` ... ``data: [DONE]``). Each delta is reported as progress,
so watchers see the answer grow. The endpoint is the operator's (a setting), not the caller's.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx
from django.conf import settings
from pydantic import BaseModel, Field, model_validator

from .. import llm_pool
from ..errors import ToolError
from ..outbound import retryable_http_failures
from ..registry import Tool, ToolArgs, ToolContext, register

PROGRESS_TAIL_CHARS = 200


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str


class LlmChatArgs(ToolArgs):
    messages: list[ChatMessage] | None = Field(None, min_length=1, max_length=500)
    prompt: str | None = Field(None, min_length=1)
    model: str | None = Field(None, min_length=1, max_length=200)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    temperature: float | None = Field(None, ge=0, le=2)
    timeout: float = Field(120.0, gt=0, le=3600)

    @model_validator(mode="after")
    def one_input(self) -> LlmChatArgs:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give either messages or prompt")
        return self


async def sse_events(response: httpx.Response) -> AsyncIterator[str]:
    """The ``data`` of each Server-Sent Event (multi-line data joined with newlines)."""
    data: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        # Comments (":"), "event:", "id:" and "retry:" carry nothing we use.
    if data:
        yield "\n".join(data)


def _request_body(args: LlmChatArgs, model: str = "") -> dict[str, Any]:
    messages = (
        [m.model_dump() for m in args.messages]
        if args.messages is not None
        else [{"role": "user", "content": args.prompt}]
    )
    body: dict[str, Any] = {
        "model": args.model or model or settings.CLAWSITE_LLM_MODEL,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if args.max_tokens is not None:
        body["max_tokens"] = args.max_tokens
    if args.temperature is not None:
        body["temperature"] = args.temperature
    return body


async def _error_for(response: httpx.Response) -> ToolError:
    detail = (await response.aread())[:2000].decode("utf-8", "replace")
    retryable = response.status_code == 429 or response.status_code >= 500
    return ToolError(
        "llm_error",
        f"the LLM endpoint answered {response.status_code}: {detail}",
        retryable=retryable,
    )


@register
class LlmChat(Tool):
    name = "llm_chat"
    open_world = True
    description = (
        "Ask the configured OpenAI-compatible chat endpoint (CLAWSITE_LLM_BASE_URL); the answer "
        "streams in as progress."
    )
    Args = LlmChatArgs
    default_timeout = 120.0

    def is_enabled(self, user: Any = None) -> bool:
        try:
            return bool(llm_pool.endpoints())
        except ValueError:
            return False

    async def run(self, args: LlmChatArgs, ctx: ToolContext) -> dict[str, Any]:
        timeout = ctx.limit(args.timeout) or args.timeout

        async def ask(endpoint: llm_pool.Endpoint) -> dict[str, Any]:
            return await self._ask(endpoint, args, ctx, timeout)

        result, endpoint = await llm_pool.call(ask, time.monotonic() + timeout)
        return {**result, "endpoint": endpoint.name}

    async def _ask(
        self, endpoint: llm_pool.Endpoint, args: LlmChatArgs, ctx: ToolContext, timeout: float
    ) -> dict[str, Any]:
        url = endpoint.base_url.rstrip("/") + "/chat/completions"
        headers = {"Accept": "text/event-stream"}
        if endpoint.api_key:
            headers["Authorization"] = f"Bearer {endpoint.api_key}"
        body = _request_body(args, endpoint.model)
        try:
            with retryable_http_failures(f"the LLM endpoint took over {timeout:g} s"):
                async with (
                    httpx.AsyncClient(timeout=timeout, trust_env=False) as client,
                    client.stream("POST", url, json=body, headers=headers) as response,
                ):
                    if response.status_code >= 400:
                        error = await _error_for(response)
                        if error.retryable:  # 429, 5xx: the endpoint's trouble, not ours
                            wait = llm_pool.retry_after_seconds(response.headers.get("Retry-After"))
                            raise llm_pool.EndpointFailure(error, wait)
                        raise error
                    if response.headers.get("content-type", "").startswith("application/json"):
                        return _from_completion(json.loads(await response.aread()))
                    return await self._collect(response, ctx)
        except ToolError as error:
            if error.type in ("timeout", "connection_error"):
                raise llm_pool.EndpointFailure(error) from None
            raise
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ToolError("llm_protocol_error", f"unexpected answer: {exc}") from None

    async def _collect(self, response: httpx.Response, ctx: ToolContext) -> dict[str, Any]:
        parts: list[str] = []
        model = ""
        usage = None
        chunks = 0
        async for data in sse_events(response):
            if data.strip() == "[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                raise ToolError("llm_error", f"the LLM endpoint reported: {chunk['error']}")
            model = chunk.get("model") or model
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                delta = (choice.get("delta") or {}).get("content")
                if delta:
                    parts.append(delta)
                    chunks += 1
                    ctx.report_progress(chunks, None, "".join(parts)[-PROGRESS_TAIL_CHARS:])
        return {"content": "".join(parts), "model": model, "usage": usage}


def _from_completion(body: dict[str, Any]) -> dict[str, Any]:
    """A server that ignored ``stream`` and answered one JSON completion."""
    return {
        "content": body["choices"][0]["message"]["content"] or "",
        "model": body.get("model", ""),
        "usage": body.get("usage"),
    }
