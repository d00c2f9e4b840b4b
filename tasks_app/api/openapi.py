"""The OpenAPI 3 document of API v1: requests described by the same pydantic models that validate
them, the task object by the same field table that serializes it (``serializers.TASK_FIELDS``)."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel

from tools_app.registry import all_tools

from ..schemas import (
    BatchSubmission,
    LookupRequest,
    TaskListQuery,
    TaskSubmission,
    ToolListQuery,
)
from ..serializers import task_json_schema

REF = "#/components/schemas/{model}"

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {},
            },
            "required": ["code", "message"],
        }
    },
}


# What a client does next with a task it submitted (the fuzzer's stateful phase follows these).
TASK_LINKS = {
    op: {"operationId": op, "parameters": {"task_id": "$response.body#/id"}}
    for op in ("getTask", "cancelTask", "retryTask")
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(name: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(name)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    # 429: rate_limited on every authenticated call, queue_full on submits (with Retry-After).
    return {str(status): _json(_ref("Error"), "Error") for status in (401, 429, *statuses)}


def _task_id_param() -> list[dict[str, Any]]:
    return [{"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}]


def _query_params(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    return [
        {"name": name, "in": "query", "required": False, "schema": prop}
        for name, prop in schema["properties"].items()
    ]


def _components() -> dict[str, Any]:
    schemas: dict[str, Any] = {"Task": task_json_schema(), "Error": ERROR_SCHEMA}
    for model in (TaskSubmission, BatchSubmission, LookupRequest):
        schema = model.model_json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    for tool in all_tools():
        schemas[f"{tool.name}_args"] = tool.Args.model_json_schema(ref_template=REF)
    return schemas


def _queue_change(summary: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {"200": _json({"type": "object"}), **_errors(400, 403)},
        }
    }


@functools.cache
def build_openapi() -> dict[str, Any]:
    task_list = {
        "type": "object",
        "properties": {"tasks": {"type": "array", "items": _ref("Task")}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "ClawSite API", "version": "1"},
        "servers": [{"url": "/api/v1"}],
        "components": {
            "schemas": _components(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "sessionid"},
            },
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": {
            "/tools": {
                "get": {
                    "summary": "List the tools (format=openai|anthropic: the caller's enabled "
                    "tools as function-calling or tool-use definitions)",
                    "parameters": _query_params(ToolListQuery),
                    "responses": {"200": _json({"type": "object"}), **_errors(400)},
                }
            },
            "/tasks": {
                "get": {
                    "summary": "List tasks, newest first",
                    "parameters": _query_params(TaskListQuery),
                    "responses": {"200": _json(task_list), **_errors(400)},
                },
                "post": {
                    "summary": "Submit a task",
                    "operationId": "submitTask",
                    "requestBody": _body("TaskSubmission"),
                    "responses": {
                        "202": {**_json(_ref("Task"), "Accepted"), "links": TASK_LINKS},
                        "200": _json(_ref("Task"), "Idempotent repeat"),
                        **_errors(400, 403, 409, 413),
                    },
                },
            },
            "/tasks/batch": {
                "post": {
                    "summary": "Submit 1 to 1000 tasks, all or nothing",
                    "requestBody": _body("BatchSubmission"),
                    "responses": {"202": _json(task_list, "Accepted"), **_errors(400, 413)},
                }
            },
            "/tasks/lookup": {
                "post": {
                    "summary": "Read up to 1000 tasks by id",
                    "requestBody": _body("LookupRequest"),
                    "responses": {"200": _json(task_list), **_errors(400)},
                }
            },
            "/tasks/{task_id}": {
                "get": {
                    "summary": "Read a task; with wait, long-poll until it is terminal",
                    "operationId": "getTask",
                    "parameters": [
                        *_task_id_param(),
                        {
                            "name": "wait",
                            "in": "query",
                            "schema": {"type": "number", "minimum": 0, "maximum": 60},
                        },
                    ],
                    "responses": {"200": _json(_ref("Task")), **_errors(400, 404)},
                }
            },
            "/tasks/{task_id}/cancel": {
                "post": {
                    "summary": "Cancel a task",
                    "operationId": "cancelTask",
                    "parameters": _task_id_param(),
                    "responses": {
                        "200": _json(_ref("Task"), "Cancelled"),
                        "202": _json(_ref("Task"), "Cancellation requested"),
                        **_errors(404, 409),
                    },
                }
            },
            "/tasks/{task_id}/retry": {
                "post": {
                    "summary": "Queue a failed or cancelled task again",
                    "operationId": "retryTask",
                    "parameters": _task_id_param(),
                    "responses": {"202": _json(_ref("Task"), "Queued"), **_errors(404, 409)},
                }
            },
            "/stats": {
                "get": {
                    "summary": "Queue and cache statistics (users: their own queue)",
                    "responses": {"200": _json({"type": "object"}), **_errors()},
                }
            },
            "/cache": {
                "delete": {
                    "summary": "Invalidate cached tool results (staff)",
                    "parameters": [
                        {"name": "tool", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "pattern",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "glob on <username>/<path>",
                        },
                    ],
                    "responses": {
                        "200": _json(
                            {"type": "object", "properties": {"deleted": {"type": "integer"}}}
                        ),
                        **_errors(400, 403),
                    },
                }
            },
            "/queues": {
                "get": {
                    "summary": "Every queue with tasks or paused, with its counts (staff)",
                    "responses": {"200": _json({"type": "object"}), **_errors(403)},
                }
            },
            "/queues/{name}/pause": _queue_change("Pause a queue: it runs nothing (staff)"),
            "/queues/{name}/resume": _queue_change("Resume a paused queue (staff)"),
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": _json({"type": "object"})},
                }
            },
        },
    }
