"""What a client may send: the submission of a task, and the list query. Validated by pydantic."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from .models import DEFAULT_QUEUE, QUEUE_NAME_PATTERN, TaskSource, TaskStatus
from .safejson import check_storable, check_text


def _in_utc(value: datetime) -> datetime:
    """The time in UTC, which is how it is stored; ``9999-12-31T23:59:59-23:59`` is past the
    last representable instant and refused here rather than in the shared transaction."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the date is out of range once converted to UTC") from None


def _storable_args(value: dict[str, Any]) -> dict[str, Any]:
    check_storable(value)
    return value


# Text that both databases can store (no NUL, no lone surrogate): what a query may compare to.
StorableText = Annotated[str, AfterValidator(check_text)]
StorableTime = Annotated[AwareDatetime, AfterValidator(_in_utc)]

MAX_BATCH = 1000
MAX_LOOKUP = 1000


class TaskSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tool: StorableText = Field(min_length=1, max_length=64)
    args: Annotated[dict[str, Any], AfterValidator(_storable_args)] = Field(default_factory=dict)
    priority: int = Field(0, ge=-100, le=100)
    timeout: float | None = Field(None, gt=0, le=86400, description="Seconds per attempt.")
    max_attempts: int = Field(3, ge=1, le=100)
    run_after: StorableTime | None = None
    idempotency_key: StorableText | None = Field(None, min_length=1, max_length=200)
    queue: str = Field(DEFAULT_QUEUE, pattern=QUEUE_NAME_PATTERN)


class BatchSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tasks: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH)


class LookupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[Annotated[StorableText, Field(max_length=200)]] = Field(
        min_length=1, max_length=MAX_LOOKUP
    )


class TaskListQuery(BaseModel):
    status: Literal[tuple(TaskStatus.values)] | None = None  # type: ignore[valid-type]
    tool: StorableText | None = Field(None, max_length=64)
    queue: str | None = Field(None, pattern=QUEUE_NAME_PATTERN)
    source: Literal[tuple(TaskSource.values)] | None = None  # type: ignore[valid-type]
    limit: int = Field(50, ge=1, le=500)
    cursor: StorableText | None = Field(None, max_length=200)


class ToolListQuery(BaseModel):
    format: Literal["openai", "anthropic"] | None = None


class WaitQuery(BaseModel):
    wait: float | None = Field(None, ge=0, le=60)
