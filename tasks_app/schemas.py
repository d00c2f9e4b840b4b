"""What a client may send: the submission of a task, and the list query. Validated by pydantic."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from .models import DEFAULT_QUEUE, QUEUE_NAME_PATTERN, TaskSource, TaskStatus

MAX_BATCH = 1000
MAX_LOOKUP = 1000


class TaskSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tool: str = Field(min_length=1, max_length=64)
    args: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(0, ge=-100, le=100)
    timeout: float | None = Field(None, gt=0, le=86400, description="Seconds per attempt.")
    max_attempts: int = Field(3, ge=1, le=100)
    run_after: AwareDatetime | None = None
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)
    queue: str = Field(DEFAULT_QUEUE, pattern=QUEUE_NAME_PATTERN)


class BatchSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tasks: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH)


class LookupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[str] = Field(min_length=1, max_length=MAX_LOOKUP)


class TaskListQuery(BaseModel):
    status: Literal[tuple(TaskStatus.values)] | None = None  # type: ignore[valid-type]
    tool: str | None = Field(None, max_length=64)
    queue: str | None = Field(None, pattern=QUEUE_NAME_PATTERN)
    source: Literal[tuple(TaskSource.values)] | None = None  # type: ignore[valid-type]
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = Field(None, max_length=200)


class ToolListQuery(BaseModel):
    format: Literal["openai", "anthropic"] | None = None


class WaitQuery(BaseModel):
    wait: float | None = Field(None, ge=0, le=60)
