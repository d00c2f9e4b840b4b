"""Structured logs: every record carries ``task_id``, and ``CLAWSITE_LOG_FORMAT=json`` writes one
JSON object per line for log collectors.

The task id comes from ``extra={"task_id": ...}``, else from ``current_task_id``, which the worker
sets at the start of each task's asyncio task (each has its own context), so whatever a tool, the
runner or the cache logs while a task runs names that task; ``-`` elsewhere."""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

current_task_id: ContextVar[str | None] = ContextVar("current_task_id", default=None)

# Attributes every LogRecord has; anything else was passed in ``extra`` and is kept.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class TaskIdFilter(logging.Filter):
    """Gives every record a ``task_id`` so plain formats can name it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "task_id"):
            record.task_id = current_task_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)
