"""Pages for people: the task list, a task, the submit form. Live updates come over websockets."""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from . import services
from .errors import ApiError
from .forms import TaskSubmitForm
from .models import Task, TaskStatus
from .serializers import task_to_dict


@login_required
def task_list(request: HttpRequest) -> HttpResponse:
    tasks = Task.objects.visible_to(request.user).select_related("owner").order_by("-created_at", "-id")
    status = request.GET.get("status", "")
    if status in TaskStatus.values:
        tasks = tasks.filter(status=status)
    page = Paginator(tasks, 50).get_page(request.GET.get("page"))
    return render(
        request,
        "tasks/task_list.html",
        {"page": page, "status": status, "statuses": TaskStatus.values},
    )


@login_required
def task_detail(request: HttpRequest, task_id: str) -> HttpResponse:
    task = Task.objects.visible_to(request.user).filter(pk=task_id).first()
    if task is None:
        raise Http404("No such task.")
    return render(
        request,
        "tasks/task_detail.html",
        {"task": task, "task_json": json.dumps(task_to_dict(task), indent=2)},
    )


@login_required
def task_submit(request: HttpRequest) -> HttpResponse:
    form = TaskSubmitForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        raw = {
            "tool": form.cleaned_data["tool"],
            "args": form.cleaned_data["args"],
            "priority": form.cleaned_data["priority"],
        }
        try:
            validated = services.validate_submission(raw, request.user)
            [(task, _)] = services.submit_tasks(request.user, [validated])
        except ApiError as error:
            form.add_error(None, error.message)
            for detail in error.details or []:
                form.add_error(None, f"{detail.get('loc', '')}: {detail.get('message', '')}")
        else:
            return redirect(task)
    return render(request, "tasks/task_submit.html", {"form": form})
