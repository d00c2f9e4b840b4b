"""API v1 (the contract: the API design document; served as /api/v1/openapi.json). Views:
authorise, validate, one call, render."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.utils.dateparse import parse_datetime
from django.utils.timezone import is_aware

from tools_app.formats import AGENT_FORMATS
from tools_app.registry import all_tools

from .. import queues, services, store
from ..db import GroupCommit, run_in_db_thread
from ..errors import ApiError
from ..models import Task
from ..queue_names import queue_name_problem
from ..safejson import check_text, is_storable_text
from ..schemas import BatchSubmission, LookupRequest, TaskListQuery, ToolListQuery, WaitQuery
from ..serializers import task_to_dict
from ..stats import get_stats
from ..waiting import await_task
from .base import endpoint, json_body, parse, query, respond


async def list_tools(request: HttpRequest, user: Any) -> HttpResponse:
    params = query(request, ToolListQuery)
    if params.format is None:
        return respond({"tools": [tool.describe(user) for tool in all_tools()]})
    # Agent frameworks get only what they may call: the caller's enabled tools.
    export = AGENT_FORMATS[params.format]
    return respond({"tools": [export(tool) for tool in all_tools() if tool.is_enabled(user)]})


# --- submit ----------------------------------------------------------------------------------------

# Submits arriving together share one transaction and one database-thread round trip.
submit_together = GroupCommit(services.submit_grouped)


async def submit_task(request: HttpRequest, user: Any) -> HttpResponse:
    validated = services.validate_submission(json_body(request), user)
    [(task, created)] = await submit_together((user, [validated]))
    return respond(task_to_dict(task), status=202 if created else 200)


async def submit_batch(request: HttpRequest, user: Any) -> HttpResponse:
    batch = parse(BatchSubmission, json_body(request), code="invalid_batch")
    validated, problems = [], []
    for index, item in enumerate(batch.tasks):
        try:
            validated.append(services.validate_submission(item, user))
        except ApiError as error:
            problems.append({"index": index, "error": error.as_dict()})
    if problems:
        raise ApiError(
            "invalid_batch",
            f"{len(problems)} of {len(batch.tasks)} tasks are invalid; none was created.",
            problems,
        )
    try:
        outcome = await submit_together((user, validated))
    except ApiError as error:
        if error.code != "conflict":
            raise
        raise ApiError(
            "invalid_batch",
            "An idempotency key was reused with different content; none was created.",
            [{"index": error.details["index"], "error": error.as_dict()}],
        ) from None
    return respond({"tasks": [task_to_dict(task) for task, _ in outcome]}, status=202)


# --- read ------------------------------------------------------------------------------------------


def _encode_cursor(task: Task) -> str:
    return base64.urlsafe_b64encode(f"{task.created_at.isoformat()}|{task.id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    """A cursor this API made, or ``invalid_args``: a forged one may decode to anything (a date
    out of range once in UTC, an id with NUL), so each part is checked as input is."""
    try:
        created, _, task_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        when = parse_datetime(created)
        if when is not None:
            when = when.astimezone(UTC) if is_aware(when) else None
        check_text(task_id)
    except (binascii.Error, ValueError, OverflowError):  # UnicodeDecodeError is a ValueError
        when = None
    if when is None or not task_id:
        raise ApiError("invalid_args", "The cursor is not valid.")
    return when, task_id


def _list_page(user: Any, params: TaskListQuery) -> tuple[list[Task], Task | None]:
    tasks = Task.objects.visible_to(user).order_by("-created_at", "-id")
    if params.status:
        tasks = tasks.filter(status=params.status)
    if params.tool:
        tasks = tasks.filter(tool=params.tool)
    if params.queue:
        tasks = tasks.filter(queue=params.queue)
    if params.source:
        tasks = tasks.filter(source=params.source)
    if params.cursor:
        created, task_id = _decode_cursor(params.cursor)
        tasks = tasks.filter(Q(created_at__lt=created) | Q(created_at=created, id__lt=task_id))
    page = list(tasks[: params.limit + 1])
    return page[: params.limit], (page[params.limit - 1] if len(page) > params.limit else None)


async def list_tasks(request: HttpRequest, user: Any) -> HttpResponse:
    params = query(request, TaskListQuery)
    page, last = await run_in_db_thread(_list_page, user, params)
    next_url = None
    if last is not None:
        following = request.GET.copy()
        following["cursor"] = _encode_cursor(last)
        next_url = f"{request.path}?{following.urlencode()}"
    return respond({"tasks": [task_to_dict(task) for task in page], "next": next_url})


def _visible_task(user: Any, task_id: str) -> Task:
    if not is_storable_text(task_id):  # no such id can exist (PostgreSQL would refuse a NUL)
        raise ApiError("not_found", "No such task.")
    task = store.fetch_task(task_id, None if user.is_staff else user.pk)
    if task is None:
        raise ApiError("not_found", "No such task.")
    return task


async def get_task(request: HttpRequest, user: Any, task_id: str) -> HttpResponse:
    params = query(request, WaitQuery)
    task = await run_in_db_thread(_visible_task, user, task_id)
    if params.wait:
        task = await await_task(
            task, lambda: run_in_db_thread(_visible_task, user, task_id), wait=params.wait
        )
    return respond(task_to_dict(task))


def _lookup(user: Any, ids: list[str]) -> list[Task]:
    found = Task.objects.visible_to(user).in_bulk(ids)
    return [found[task_id] for task_id in ids if task_id in found]


async def lookup_tasks(request: HttpRequest, user: Any) -> HttpResponse:
    params = parse(LookupRequest, json_body(request))
    tasks = await run_in_db_thread(_lookup, user, params.ids)
    return respond({"tasks": [task_to_dict(task) for task in tasks]})


# --- change ----------------------------------------------------------------------------------------


async def cancel_task(request: HttpRequest, user: Any, task_id: str) -> HttpResponse:
    def cancel() -> Task:
        return services.cancel_task(_visible_task(user, task_id), actor=user)

    task = await run_in_db_thread(cancel)
    return respond(task_to_dict(task), status=200 if task.is_terminal else 202)


async def retry_task(request: HttpRequest, user: Any, task_id: str) -> HttpResponse:
    def retry() -> Task:
        return services.retry_task(_visible_task(user, task_id), actor=user)

    return respond(task_to_dict(await run_in_db_thread(retry)), status=202)


async def stats(request: HttpRequest, user: Any) -> HttpResponse:
    return respond(await run_in_db_thread(get_stats, user))


async def list_queues(request: HttpRequest, user: Any) -> HttpResponse:
    return respond({"queues": await run_in_db_thread(queues.queue_rows, None, True)})


def _pause_or_resume(paused: bool) -> Any:
    async def handler(request: HttpRequest, user: Any, name: str) -> HttpResponse:
        if (problem := queue_name_problem(name)) is not None:
            raise ApiError("invalid_args", problem)

        def change() -> dict[str, Any]:
            queues.set_paused(name, paused, user)
            return queues.queue_row(name)

        return respond(await run_in_db_thread(change))

    return handler


async def openapi_document(request: HttpRequest, user: Any) -> HttpResponse:
    from .openapi import build_openapi

    return respond(build_openapi())


tools = endpoint(GET=list_tools)
tasks = endpoint(GET=list_tasks, POST=submit_task)
batch = endpoint(POST=submit_batch)
lookup = endpoint(POST=lookup_tasks)
task = endpoint(GET=get_task)
cancel = endpoint(POST=cancel_task)
retry = endpoint(POST=retry_task)
openapi = endpoint(public=True, GET=openapi_document)
queue_stats = endpoint(GET=stats)
queue_list = endpoint(staff_only=True, GET=list_queues)
queue_pause = endpoint(staff_only=True, POST=_pause_or_resume(True))
queue_resume = endpoint(staff_only=True, POST=_pause_or_resume(False))
