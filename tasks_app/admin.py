"""The admin: tasks steered through the same services as the API, tokens issued and revoked,
workers' heartbeats, and the queue statistics page (``get_stats()``, as everywhere)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.options import ActionLocation
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join

from . import audit, services
from .errors import ApiError
from .limits import describe_limits
from .models import (
    DJANGO_TASK_TOOL,
    TERMINAL_STATUSES,
    ApiToken,
    AuditEvent,
    Limit,
    Queue,
    Schedule,
    Task,
    WorkerHeartbeat,
)
from .queues import queue_rows, set_paused
from .schedules import start_schedule
from .stats import get_stats

MACHINE_FIELDS = (
    "id",
    "owner",
    "attempts",
    "progress",
    "result",
    "error",
    "cache_hit",
    "created_at",
    "started_at",
    "finished_at",
    "duration_ms",
    "version",
    "worker_id",
    "lease_expires_at",
    "cancel_requested",
    "attempt_history",
)


class FunctionFilter(admin.SimpleListFilter):
    """Django tasks by their function (``args.task``)."""

    title = "function"
    parameter_name = "function"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        functions = (
            Task.objects.filter(tool=DJANGO_TASK_TOOL)
            .order_by()
            .values_list("args__task", flat=True)
            .distinct()
        )
        return [(path, path) for path in sorted(f for f in functions if isinstance(f, str))]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        if self.value():
            return queryset.filter(tool=DJANGO_TASK_TOOL, args__task=self.value())
        return queryset


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "tool",
        "queue",
        "source",
        "status",
        "owner",
        "priority",
        "attempts",
        "created_at",
        "duration_ms",
    )
    list_filter = (
        "status",
        "tool",
        "queue",
        "source",
        FunctionFilter,
        ("owner", admin.RelatedOnlyFieldListFilter),
    )
    # Any part of the id, not only its start: ids begin with their creation time (UUIDv7), so
    # the tasks of the same minute share a prefix, and the random tail is what tells them apart.
    search_fields = ("id", "args")
    list_select_related = ("owner",)
    # Every field is read-only: a task changes through the actions below (the services, which
    # save and then tell the watchers and the workers), never through a raw save of this form.
    readonly_fields = (
        *MACHINE_FIELDS,
        "tool",
        "queue",
        "source",
        "args",
        "status",
        "priority",
        "max_attempts",
        "timeout",
        "run_after",
        "idempotency_key",
    )
    exclude = ("attempt_log",)  # shown read-only, as a table, by attempt_history
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = ("cancel_tasks", "retry_tasks", "delete_finished_tasks")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tasks are submitted through the API or the submit page, validated there

    def has_delete_permission(self, request: HttpRequest, obj: Task | None = None) -> bool:
        # A queued or running task may be in a worker's hands: it is cancelled, not deleted.
        if obj is not None and obj.status not in TERMINAL_STATUSES:
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(
        self, request: HttpRequest, action_location: Any = ActionLocation.CHANGE_LIST
    ) -> dict[str, Any]:
        actions = super().get_actions(request, action_location)
        actions.pop("delete_selected", None)  # around the services: delete_finished_tasks instead
        return actions

    def delete_model(self, request: HttpRequest, obj: Task) -> None:
        services.delete_finished_tasks(Task.objects.filter(pk=obj.pk), actor=request.user)

    def _each(self, request: HttpRequest, queryset: Any, change: Any, verb: str) -> None:
        done = 0
        for task in queryset:
            try:
                change(task, actor=request.user)
                done += 1
            except ApiError as error:
                self.message_user(request, f"{task.id}: {error.message}", messages.WARNING)
        self.message_user(request, f"{verb} {done} task(s).")

    @admin.display(description="Attempt history")
    def attempt_history(self, task: Task) -> str:
        """One row per finished attempt: who ran it, when, and how it ended."""
        if not task.attempt_log:
            return "-"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    entry.get("attempt"),
                    entry.get("worker_id") or "-",
                    entry.get("started_at") or "-",
                    entry.get("finished_at") or "-",
                    (entry.get("error") or {}).get("type", "ok"),
                    (entry.get("error") or {}).get("message", ""),
                )
                for entry in task.attempt_log
            ),
        )
        return format_html(
            "<table><tr><th>#</th><th>worker</th><th>started</th><th>finished</th>"
            "<th>outcome</th><th>message</th></tr>{}</table>",
            rows,
        )

    @admin.action(description="Cancel the selected tasks", permissions=["change"])
    def cancel_tasks(self, request: HttpRequest, queryset: Any) -> None:
        self._each(request, queryset, services.cancel_task, "Cancelled")

    @admin.action(description="Retry the selected tasks", permissions=["change"])
    def retry_tasks(self, request: HttpRequest, queryset: Any) -> None:
        self._each(request, queryset, services.retry_task, "Queued again")

    @admin.action(description="Delete the selected finished tasks", permissions=["delete"])
    def delete_finished_tasks(self, request: HttpRequest, queryset: Any) -> None:
        deleted = services.delete_finished_tasks(queryset, actor=request.user)
        self.message_user(request, f"Deleted {deleted} finished task(s).")


def queue_stats_view(request: HttpRequest) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": "Queue statistics",
        "opts": Task._meta,
        "stats": get_stats(request.user, flow=True),
    }
    return TemplateResponse(request, "admin/tasks_app/queue_stats.html", context)


admin.site.add_stats_page(  # type: ignore[attr-defined]
    "tasks_app/task/stats/",
    queue_stats_view,
    name="tasks_app_task_stats",
    title="Queue statistics",
    description="counts, throughput, latency, workers",
)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "name", "user", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    fields = ("user", "name", "prefix", "created_at", "last_used_at", "revoked_at")
    list_select_related = ("user",)
    search_fields = ("prefix", "name", "user__username")
    actions = ("revoke_tokens",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # A token's user is fixed when it is issued: moved to another user, it would let its
        # holder act in that user's workspace.
        fixed = super().get_readonly_fields(request, obj)
        return (*fixed, "user") if obj is not None else fixed

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "user" and not request.user.is_superuser:
            # Staff who are not superusers issue tokens for themselves and non-staff users only.
            kwargs["queryset"] = get_user_model().objects.filter(
                Q(pk=request.user.pk) | Q(is_staff=False, is_superuser=False)
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        token, raw = ApiToken.issue(obj.user, name=obj.name)
        obj.pk, obj.digest, obj.prefix = token.pk, token.digest, token.prefix
        audit.record(request.user, "token.create", token.prefix, {"user": obj.user.get_username()})
        self.message_user(request, f"New token (shown once, copy it now): {raw}", messages.SUCCESS)

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke_tokens(self, request: HttpRequest, queryset: Any) -> None:
        revoked = 0
        for token in queryset.filter(revoked_at__isnull=True):
            token.revoke()
            audit.record(request.user, "token.revoke", token.prefix, {"user": token.user_id})
            revoked += 1
        self.message_user(request, f"Revoked {revoked} token(s).")


class AuditedAdmin(admin.ModelAdmin):
    """Edits and deletes (one or in bulk) recorded in the audit log as ``<audited_as>.change``
    (with the changed fields' new values) and ``<audited_as>.delete``, named by ``audited_by``."""

    audited_as = ""
    audited_by = "pk"

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        changed = {name: form.cleaned_data.get(name) for name in form.changed_data}
        target = getattr(obj, self.audited_by)
        audit.record(request.user, f"{self.audited_as}.change", target, changed)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        super().delete_model(request, obj)
        audit.record(request.user, f"{self.audited_as}.delete", getattr(obj, self.audited_by))

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        targets = list(queryset.values_list(self.audited_by, flat=True))
        super().delete_queryset(request, queryset)
        for target in targets:
            audit.record(request.user, f"{self.audited_as}.delete", target)


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    """Every queue with tasks (a row appears for each), paused and resumed by the actions: a
    paused queue runs nothing on any worker until resumed (tasks_app.queues)."""

    list_display = ("name", "paused", "queued", "running", "changed_at")
    list_filter = ("paused",)
    readonly_fields = ("name", "paused", "changed_at")
    search_fields = ("name",)
    actions = ("pause_queues", "resume_queues")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return (
            False  # a queue exists by use; pausing an unused one: POST /api/v1/queues/<name>/pause
        )

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        # One read of every queue's counts for the page (no query per row); the queues that
        # have tasks get their row, so they can be paused from here.
        self._counts = {row["name"]: row for row in queue_rows(every=True)}
        Queue.objects.bulk_create(
            [Queue(name=name) for name in self._counts], ignore_conflicts=True
        )
        return super().changelist_view(request, extra_context)

    def _count(self, obj: Queue, status: str) -> int:
        return getattr(self, "_counts", {}).get(obj.name, {}).get(status, 0)

    @admin.display(description="queued")
    def queued(self, obj: Queue) -> int:
        return self._count(obj, "queued")

    @admin.display(description="running")
    def running(self, obj: Queue) -> int:
        return self._count(obj, "running")

    def _set(self, request: HttpRequest, queryset: Any, paused: bool, verb: str) -> None:
        names = list(queryset.values_list("name", flat=True))
        for name in names:
            set_paused(name, paused, request.user)
        self.message_user(request, f"{verb} {len(names)} queue(s): {', '.join(names)}.")

    @admin.action(description="Pause the selected queues", permissions=["change"])
    def pause_queues(self, request: HttpRequest, queryset: Any) -> None:
        self._set(request, queryset, True, "Paused")

    @admin.action(description="Resume the selected queues", permissions=["change"])
    def resume_queues(self, request: HttpRequest, queryset: Any) -> None:
        self._set(request, queryset, False, "Resumed")


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ("worker_id", "hostname", "pid", "started_at", "last_heartbeat", "running")
    readonly_fields = ("worker_id", "hostname", "pid", "started_at", "last_heartbeat", "running")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Limit)
class LimitAdmin(AuditedAdmin):
    """Limits on running work; an edit counts at every worker's next claim (tasks_app.limits)."""

    list_display = ("key", "concurrency", "rate", "running_now", "tokens_now", "updated_at")
    readonly_fields = ("running_now", "tokens_now", "updated_at")
    fields = ("key", "concurrency", "rate", *readonly_fields)
    search_fields = ("key",)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        # One read of every limit's live state for the whole page (no query per row).
        self._live = {item["key"]: item for item in describe_limits()}
        return super().changelist_view(request, extra_context)

    def _state(self, obj: Limit) -> dict[str, Any]:
        live = getattr(self, "_live", None)
        if live is None or obj.key not in live:
            live = {item["key"]: item for item in describe_limits()}
        return live.get(obj.key, {})

    audited_as, audited_by = "limit", "key"

    @admin.display(description="running")
    def running_now(self, obj: Limit) -> Any:
        return self._state(obj).get("running", "-")

    @admin.display(description="tokens")
    def tokens_now(self, obj: Limit) -> Any:
        tokens = self._state(obj).get("tokens")
        return "-" if tokens is None else tokens


@admin.register(Schedule)
class ScheduleAdmin(AuditedAdmin):
    """Recurring tasks; each run is an ordinary task (source "schedule") linked to its row."""

    audited_as, audited_by = "schedule", "name"

    list_display = (
        "name",
        "tool",
        "owner",
        "queue",
        "interval_seconds",
        "cron",
        "catch_up",
        "enabled",
        "next_run_at",
        "last_run_at",
        "runs_fired",
        "runs_skipped",
    )
    list_filter = ("enabled", "tool", "catch_up")
    search_fields = ("name", "tool")
    list_select_related = ("owner",)
    readonly_fields = ("last_run_at", "last_task_id", "runs_fired", "runs_skipped")

    def save_model(self, request: HttpRequest, obj: Schedule, form: Any, change: bool) -> None:
        # A new schedule, a new timing, or a cleared due time: start from now. Re-enabling
        # keeps the old due time, so the catch-up policy decides about the runs missed.
        timing = {"interval_seconds", "cron"} & set(form.changed_data)
        if not change or timing or obj.next_run_at is None:
            start_schedule(obj)
        super().save_model(request, obj, form, change)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """The audit log, read-only: events are written by the code (tasks_app.audit) and pruned
    with the tasks, never added, edited or deleted here."""

    list_display = ("at", "actor_name", "action", "target", "outcome")
    list_filter = ("action", "outcome")
    search_fields = ("actor_name", "action", "target", "args_digest")
    date_hierarchy = "at"
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
