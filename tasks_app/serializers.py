"""The task object of the API contract, built in one place for HTTP, websockets and pages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from django.conf import settings

from .models import Task, TaskSource, TaskStatus
from .queue_names import QUEUE_NAME_PATTERN
from .safejson import rough_size_over


def isoformat(value: datetime | None) -> str | None:
    """ISO 8601, UTC written ``Z``. A UTC value is formatted naive (40% cheaper: no offset to
    compute; every payload formats four of these)."""
    if value is None:
        return None
    if value.tzinfo is UTC:
        return f"{value.replace(tzinfo=None).isoformat()}Z"
    return value.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class TaskField:
    """One field of the task object: its JSON Schema (the OpenAPI document's ``Task``) and where
    its value comes from (the ``Task`` attribute ``attr``, default the field's own name, passed
    through ``convert`` when given)."""

    schema: dict[str, Any]
    attr: str | None = None
    convert: Callable[[Any], Any] | None = None


_TEXT = {"type": "string"}
_INTEGER = {"type": "integer"}
_TIME = {"type": "string", "format": "date-time"}
_TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
_OBJECT_OR_NULL = {"type": ["object", "null"]}

# The task object of the contract: adding a field here adds it to every payload and to the
# OpenAPI document alike.
TASK_FIELDS: dict[str, TaskField] = {
    "id": TaskField(_TEXT),
    "tool": TaskField(_TEXT),
    "queue": TaskField({"type": "string", "pattern": QUEUE_NAME_PATTERN}),
    "source": TaskField({"type": "string", "enum": TaskSource.values}),
    "args": TaskField({"type": "object"}),
    "status": TaskField({"type": "string", "enum": TaskStatus.values}),
    "priority": TaskField({"type": "integer", "minimum": -100, "maximum": 100}),
    "attempts": TaskField(_INTEGER),
    "max_attempts": TaskField(_INTEGER),
    "timeout": TaskField({"type": "number"}),
    "run_after": TaskField(_TIME_OR_NULL, convert=isoformat),
    "progress": TaskField(_OBJECT_OR_NULL),
    "result": TaskField({}),
    "error": TaskField(_OBJECT_OR_NULL),
    "cache_hit": TaskField({"type": "boolean"}),
    "idempotency_key": TaskField({"type": ["string", "null"]}),
    "created_at": TaskField(_TIME, convert=isoformat),
    "started_at": TaskField(_TIME_OR_NULL, convert=isoformat),
    "finished_at": TaskField(_TIME_OR_NULL, convert=isoformat),
    "duration_ms": TaskField({"type": ["number", "null"]}),
    "version": TaskField(_INTEGER),
    "url": TaskField(_TEXT, attr="id", convert="/api/v1/tasks/{}".format),
    # The owner's user id; null for a task enqueued by code (django.tasks).
    "owner": TaskField({"type": ["integer", "null"]}, attr="owner_id"),
    "attempt_history": TaskField(
        {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "attempt": _INTEGER,
                    "worker_id": _TEXT,
                    "started_at": _TIME_OR_NULL,
                    "finished_at": _TIME_OR_NULL,
                    "error": _OBJECT_OR_NULL,
                },
            },
        },
        attr="attempt_log",
    ),
}


def task_json_schema() -> dict[str, Any]:
    """The JSON Schema of what ``task_to_dict`` returns (every field is always there)."""
    return {
        "type": "object",
        "properties": {name: field.schema for name, field in TASK_FIELDS.items()},
        "required": list(TASK_FIELDS),
    }


# task_to_dict runs for every payload (thousands a second on the worker): the attributes are
# read in one C call, and only the few fields with a conversion are touched in Python.
_NAMES = list(TASK_FIELDS)
_read_attributes = attrgetter(*(field.attr or name for name, field in TASK_FIELDS.items()))
_CONVERSIONS = [
    (index, field.convert)
    for index, field in enumerate(TASK_FIELDS.values())
    if field.convert is not None
]


def task_to_dict(task: Task) -> dict[str, Any]:
    values = list(_read_attributes(task))
    for index, convert in _CONVERSIONS:
        values[index] = convert(values[index])
    return dict(zip(_NAMES, values, strict=True))


def task_to_frame(task: Task) -> dict[str, Any]:
    """The task as websocket frames carry it: a result over ``CLAWSITE_WS_MAX_RESULT_BYTES``
    is left out (``"result_omitted": true``; GET the task's ``url`` for it), so a large result
    is not broadcast to every watcher with every change."""
    data = task_to_dict(task)
    if task.result is not None and rough_size_over(
        task.result, settings.CLAWSITE_WS_MAX_RESULT_BYTES
    ):
        data["result"] = None
        data["result_omitted"] = True
    return data
