"""The OpenAPI document's task schema and the task object the API answers come from one field
table (tasks_app.serializers.TASK_FIELDS): every task the API can show is valid against it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction
from django.test import AsyncClient
from django.utils import timezone

from tasks_app import store
from tasks_app.models import Task, TaskStatus
from tasks_app.serializers import task_to_dict
from tasks_app.store import Completion

# A dependency of the pinned schemathesis (requirements.txt), the validator it uses itself.
jsonschema_rs = pytest.importorskip("jsonschema_rs")

pytestmark = pytest.mark.django_db(transaction=True)


def tasks_in_every_shape(user: Any) -> list[Task]:
    """A queued task, one that failed once and then succeeded, and one enqueued by code."""
    queued = Task.objects.create(owner=user, tool="read_file", args={"path": "a"})
    retried = Task.objects.create(owner=user, tool="read_file", args={"path": "b"}, priority=5)
    lease = timedelta(seconds=30)
    for status in (TaskStatus.QUEUED, TaskStatus.SUCCEEDED):
        with transaction.atomic():
            (claimed,) = store.claim_runnable_tasks("w1", 1, timezone.now(), lease)
            error = {"type": "timeout", "message": "slow"} if status == TaskStatus.QUEUED else None
            done = Completion(claimed, status, {"content": "x"}, error, finished_at=timezone.now())
            store.complete_tasks("w1", [done])
    ownerless = Task.objects.create(owner=None, tool="django_task", args={"task": "m.f"})
    return [Task.objects.get(pk=t.pk) for t in (queued, retried, ownerless)]


async def test_every_task_the_api_shows_matches_the_documented_schema(alice: Any) -> None:
    document = (await AsyncClient().get("/api/v1/openapi.json")).json()
    schema = document["components"]["schemas"]["Task"]
    validator = jsonschema_rs.validator_for(schema)
    tasks = await sync_to_async(tasks_in_every_shape)(alice)
    assert tasks[1].attempt_log and tasks[1].finished_at and tasks[2].owner_id is None
    for task in tasks:
        payload = task_to_dict(task)
        # Not one field more or less than documented, each of the documented type.
        assert set(payload) == set(schema["properties"]) == set(schema["required"])
        errors = [str(error) for error in validator.iter_errors(payload)]
        assert errors == [], (task.id, errors)
    assert {"owner", "attempt_history", "queue", "source"} <= set(schema["properties"])
