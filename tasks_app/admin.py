from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from . import services
from .errors import ApiError
from .models import ApiToken, Task, WorkerHeartbeat

MACHINE_FIELDS = (
    "id", "owner", "attempts", "progress", "result", "error", "cache_hit", "created_at",
    "started_at", "finished_at", "duration_ms", "version", "worker_id", "lease_expires_at",
    "cancel_requested", "attempt_history",
)


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ("id", "tool", "status", "owner", "priority", "attempts", "created_at", "duration_ms")
    list_filter = ("status", "tool", ("owner", admin.RelatedOnlyFieldListFilter))
    search_fields = ("id", "args")
    list_select_related = ("owner",)
    readonly_fields = MACHINE_FIELDS
    exclude = ("attempt_log",)  # shown read-only, as a table, by attempt_history
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = ("cancel_tasks", "retry_tasks")

    def _each(self, request: HttpRequest, queryset: Any, change: Any, verb: str) -> None:
        done = 0
        for task in queryset:
            try:
                change(task)
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

    @admin.action(description="Cancel the selected tasks")
    def cancel_tasks(self, request: HttpRequest, queryset: Any) -> None:
        self._each(request, queryset, services.cancel_task, "Cancelled")

    @admin.action(description="Retry the selected tasks")
    def retry_tasks(self, request: HttpRequest, queryset: Any) -> None:
        self._each(request, queryset, services.retry_task, "Queued again")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "name", "user", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    readonly_fields = ("prefix", "created_at", "last_used_at")
    fields = ("user", "name", "prefix", "created_at", "last_used_at", "revoked_at")
    list_select_related = ("user",)

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        token, raw = ApiToken.issue(obj.user, name=obj.name)
        obj.pk, obj.digest, obj.prefix = token.pk, token.digest, token.prefix
        self.message_user(request, f"New token (shown once, copy it now): {raw}", messages.SUCCESS)


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ("worker_id", "hostname", "pid", "started_at", "last_heartbeat", "running")
