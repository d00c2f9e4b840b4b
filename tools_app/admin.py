"""The tool cache's page in the admin: its statistics, and buttons to invalidate one tool's
answers or clear them all: a statistics page of the admin (``tasks_app.admin_site``)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse

from tasks_app import audit

from .cache import cacheable_tool_names, get_cache_stats, invalidate


def cache_view(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        tool = request.POST.get("tool") or None
        if tool is not None and tool not in cacheable_tool_names():
            messages.error(request, f"{tool!r} is not a cacheable tool.")
        else:
            deleted = invalidate(tool=tool)
            audit.record(request.user, "cache.clear", tool or "*", {"tool": tool})
            what = f"of {tool}" if tool else "of every tool"
            messages.success(request, f"Deleted {deleted} cached answer(s) {what}.")
        return redirect("admin:tools_cache")
    stats = get_cache_stats()
    rows = [
        {"tool": name, "ttl": settings.CLAWSITE_CACHE_TTL.get(name, 0), **values}
        for name, values in stats["by_tool"].items()
    ]
    context = {
        **admin.site.each_context(request),
        "title": "Tool cache",
        "stats": stats,
        "rows": rows,
        "enabled": settings.CLAWSITE_CACHE_ENABLED,
        "read_file_min_bytes": settings.CLAWSITE_CACHE_READ_FILE_MIN_BYTES,
    }
    return TemplateResponse(request, "admin/tools_app/cache.html", context)


admin.site.add_stats_page(  # type: ignore[attr-defined]
    "tools/cache/",
    cache_view,
    name="tools_cache",
    title="Tool cache",
    description="statistics, invalidation",
)
