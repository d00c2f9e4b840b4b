"""Pages for people (the operators' endpoints, /healthz and /metrics, are in ``tasks_app.ops``).

Pages work without JavaScript (forms post, pages render the row's current state); live.js only
adds live updates over the websockets. Views: authorise, validate, one call, render.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from tools_app.registry import Tool, all_tools, get_tool

from . import safejson, services
from .errors import ApiError
from .forms import BatchSubmitForm, TaskSubmitForm
from .models import DJANGO_TASK_TOOL, Task, TaskSource, TaskStatus
from .queue_names import bad_queue_name
from .safejson import is_storable_text
from .serializers import task_to_dict
from .stats import get_flow_stats, get_history, get_stats

PAGE_SIZE = 50
# Result keys whose text people read line by line.
TEXT_KEYS = ("content", "stdout", "stderr", "body")


def _visible_task_or_404(request: HttpRequest, task_id: str) -> Task:
    if not is_storable_text(task_id):
        raise Http404("No such task.")
    task = Task.objects.visible_to(request.user).select_related("owner").filter(pk=task_id).first()
    if task is None:
        raise Http404("No such task.")
    return task


# --- list ------------------------------------------------------------------------------------------


@login_required
@require_GET
def task_list(request: HttpRequest) -> HttpResponse:
    tasks = (
        Task.objects.visible_to(request.user).select_related("owner").order_by("-created_at", "-id")
    )
    status = request.GET.get("status", "")
    status = status if status in TaskStatus.values else ""
    tool = request.GET.get("tool", "")
    tool = tool if get_tool(tool) is not None or tool == DJANGO_TASK_TOOL else ""
    queue = request.GET.get("queue", "")
    queue = queue if bad_queue_name(queue) is None else ""
    if status:
        tasks = tasks.filter(status=status)
    if tool:
        tasks = tasks.filter(tool=tool)
    if queue:
        tasks = tasks.filter(queue=queue)
    source = request.GET.get("source", "")
    source = source if source in TaskSource.values else ""
    if source:
        tasks = tasks.filter(source=source)
    page = Paginator(tasks, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "tasks/task_list.html",
        {
            "page": page,
            "status": status,
            "tool": tool,
            "source": source,
            "queue": queue,
            "sources": TaskSource.values,
            "statuses": TaskStatus.values,
            "tools": [t.name for t in all_tools()] + [DJANGO_TASK_TOOL],
        },
    )


# --- one task --------------------------------------------------------------------------------------


def _text_lines(text: str) -> list[tuple[int, str]]:
    return list(enumerate(text.splitlines() or [""], start=1))


def _is_table(value: Any) -> bool:
    return bool(value) and isinstance(value, list) and all(isinstance(row, dict) for row in value)


def present_result(result: Any) -> dict[str, Any]:
    """The result in pieces people read: texts with line numbers, lists of records as tables,
    the other fields as a list of names and values; anything else as indented JSON."""
    if not isinstance(result, dict):
        return {"json": json.dumps(result, indent=2, ensure_ascii=False)}
    texts, tables, fields = [], [], []
    for key, value in result.items():
        if key in TEXT_KEYS and isinstance(value, str):
            texts.append({"name": key, "lines": _text_lines(value)})
        elif _is_table(value):
            columns = list(dict.fromkeys(column for row in value for column in row))
            rows = [[row.get(column, "") for column in columns] for row in value]
            tables.append({"name": key, "columns": columns, "rows": rows})
        elif isinstance(value, (dict, list)):
            fields.append((key, json.dumps(value, ensure_ascii=False)))
        else:
            fields.append((key, value))
    if not texts and not tables:
        return {"json": json.dumps(result, indent=2, ensure_ascii=False), "fields": []}
    return {"texts": texts, "tables": tables, "fields": fields}


def _progress_percent(task: Task) -> int | None:
    progress = task.progress or {}
    done, total = progress.get("done"), progress.get("total")
    if isinstance(done, (int, float)) and isinstance(total, (int, float)) and total > 0:
        return max(0, min(100, round(100 * done / total)))
    return None


@login_required
@require_GET
def task_detail(request: HttpRequest, task_id: str) -> HttpResponse:
    task = _visible_task_or_404(request, task_id)
    result, args, function = task.result, task.args, None
    if task.tool == DJANGO_TASK_TOOL and isinstance(args, dict):
        # People read a Django task as its function, its arguments and what it returned.
        function = args.get("task")
        args = {"args": args.get("args", []), "kwargs": args.get("kwargs", {})}
        if isinstance(result, dict):
            result = {"return_value": result.get("return_value")}
    return render(
        request,
        "tasks/task_detail.html",
        {
            "task": task,
            "function": function,
            "result": present_result(result) if result is not None else None,
            "progress_percent": _progress_percent(task),
            "can_cancel": not task.is_terminal,
            "can_retry": task.status in (TaskStatus.FAILED, TaskStatus.CANCELLED),
            "args_json": json.dumps(args, indent=2, ensure_ascii=False),
            "task_json": json.dumps(task_to_dict(task), indent=2, ensure_ascii=False),
        },
    )


def _change(request: HttpRequest, task_id: str, change: Any, done: str) -> HttpResponse:
    task = _visible_task_or_404(request, task_id)
    try:
        task = change(task, actor=request.user)
    except ApiError as error:
        messages.error(request, error.message)
    else:
        messages.success(
            request, done if task.status != TaskStatus.RUNNING else "Cancellation requested."
        )
    return redirect(task)


@login_required
@require_POST
def task_cancel(request: HttpRequest, task_id: str) -> HttpResponse:
    return _change(request, task_id, services.cancel_task, "Task cancelled.")


@login_required
@require_POST
def task_retry(request: HttpRequest, task_id: str) -> HttpResponse:
    return _change(request, task_id, services.retry_task, "Task queued again.")


# --- submit ----------------------------------------------------------------------------------------


def _selected_tool(request: HttpRequest) -> Tool:
    """The tool named by the request (a disabled one too: submitting it explains why it is
    refused), else the first enabled one."""
    named = get_tool(request.POST.get("tool") or request.GET.get("tool") or "")
    if named is not None:
        return named
    tools = [tool for tool in all_tools() if tool.is_enabled(request.user)]
    if not tools:
        raise Http404("No tool is enabled.")
    return tools[0]


@login_required
def task_submit(request: HttpRequest) -> HttpResponse:
    tool = _selected_tool(request)
    form = TaskSubmitForm(tool, request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                validated = services.validate_submission(form.submission(), request.user)
                [(task, _)] = services.submit_tasks(
                    request.user, [validated], source=TaskSource.PAGE
                )
            except ApiError as error:
                form.add_submission_errors(error.details, error.message)
                if error.status == 429:  # queue_full: the form is fine, the queue is not
                    status = 429
            else:
                messages.success(request, "Task submitted.")
                return redirect(task)
        status = max(status, 400)
    tools = [t for t in all_tools() if t.is_enabled(request.user)]
    return render(
        request,
        "tasks/task_submit.html",
        {"form": form, "tool": tool, "tools": tools},
        status=status,
    )


def validate_lines(
    numbered: list[tuple[int, str]], user: Any
) -> tuple[list[Any], list[dict[str, Any]]]:
    """Each JSON line validated as ``POST /tasks`` would; returns the valid ones and, per bad
    line, ``{"line", "error"}``."""
    validated, problems = [], []
    for number, line in numbered:
        try:
            try:
                raw = safejson.loads(line)
            except ValueError as exc:
                raise ApiError("invalid_json", f"Not valid JSON: {exc}") from None
            validated.append(services.validate_submission(raw, user))
        except ApiError as error:
            problems.append({"line": number, "error": error.as_dict()})
    return validated, problems


@login_required
def task_batch(request: HttpRequest) -> HttpResponse:
    if int(request.META.get("CONTENT_LENGTH") or 0) > settings.CLAWSITE_MAX_BODY_BYTES:
        # Refused before Django parses the upload (files are exempt from its own body cap).
        return HttpResponse(
            f"The upload is larger than {settings.CLAWSITE_MAX_BODY_BYTES} bytes.\n",
            status=413,
            content_type="text/plain",
        )
    form = BatchSubmitForm(request.POST or None, request.FILES or None)
    problems: list[dict[str, Any]] = []
    if request.method == "POST" and form.is_valid():
        validated, problems = validate_lines(form.cleaned_data["numbered_lines"], request.user)
        if not problems:
            try:
                outcome = services.submit_tasks(request.user, validated, source=TaskSource.PAGE)
            except ApiError as error:
                if error.code == "conflict":
                    line = form.cleaned_data["numbered_lines"][error.details["index"]][0]
                else:  # queue_full: about the whole batch
                    line = "all"
                problems = [{"line": line, "error": error.as_dict()}]
            else:
                messages.success(request, f"Submitted {len(outcome)} tasks.")
                return redirect("task-list")
    status = 400 if request.method == "POST" else 200
    return render(
        request, "tasks/task_batch.html", {"form": form, "problems": problems}, status=status
    )


# --- staff -----------------------------------------------------------------------------------------


@login_required
@require_GET
def dashboard_flow(request: HttpRequest) -> HttpResponse:
    """The dashboard's flow-control tables (limits, breakers, schedules), polled every few
    seconds: the stats websocket keeps exactly the fields of GET /stats."""
    if not request.user.is_staff:
        raise PermissionDenied("Staff only.")
    return JsonResponse(get_flow_stats())


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    if not request.user.is_staff:
        raise PermissionDenied("Staff only.")
    stats = get_stats(request.user, flow=True)
    return render(
        request,
        "tasks/dashboard.html",
        {"stats": stats, "stats_json": stats, "history": get_history()},
    )
