"""The cache's API: ``DELETE /api/v1/cache`` (staff), in the frame of tasks_app.api.base."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks_app import audit
from tasks_app.api.base import endpoint, query, respond
from tasks_app.db import run_in_db_thread
from tasks_app.errors import ApiError

from .cache import cacheable_tool_names, invalidate
from .registry import offload


class CacheInvalidation(BaseModel):
    """Query of DELETE /cache: ``tool`` (a cacheable tool), ``pattern`` (a Redis glob on
    "<username>/<path>"); neither clears the whole cache."""

    model_config = ConfigDict(extra="forbid")

    tool: str | None = Field(None, min_length=1, max_length=100)
    pattern: str | None = Field(None, min_length=1, max_length=1000)

    @field_validator("pattern")
    @classmethod
    def printable(cls, pattern: str | None) -> str | None:
        if pattern is not None and not pattern.isprintable():
            raise ValueError("the pattern must be printable text")
        return pattern


async def delete_cache(request: HttpRequest, user: Any) -> HttpResponse:
    asked = query(request, CacheInvalidation)
    if asked.tool is not None and asked.tool not in cacheable_tool_names():
        raise ApiError(
            "invalid_args",
            f"{asked.tool!r} is not a cacheable tool.",
            {"cacheable": cacheable_tool_names()},
        )
    deleted = await offload(invalidate, asked.tool, asked.pattern)
    await run_in_db_thread(audit.record, user, "cache.clear", asked.tool or "*", asked.model_dump())
    return respond({"deleted": deleted})


cache = endpoint(staff_only=True, DELETE=delete_cache)
