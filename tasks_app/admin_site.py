"""The admin site, with one way to add a statistics page: ``admin.site.add_stats_page(...)``
routes it under /admin/ (staff only, through ``admin_view``) and lists it on the index."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, path


@dataclass(frozen=True)
class StatsPage:
    route: str  # under /admin/
    view: Callable[[HttpRequest], HttpResponse]
    name: str  # the URL name, in the admin's namespace
    title: str
    description: str = ""

    @property
    def url_name(self) -> str:
        return f"admin:{self.name}"


class ClawSiteAdminSite(admin.AdminSite):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stats_pages: list[StatsPage] = []

    def add_stats_page(
        self,
        route: str,
        view: Callable[[HttpRequest], HttpResponse],
        *,
        name: str,
        title: str,
        description: str = "",
    ) -> None:
        self.stats_pages.append(StatsPage(route, view, name, title, description))

    def get_urls(self) -> list[URLPattern | URLResolver]:
        pages = [path(p.route, self.admin_view(p.view), name=p.name) for p in self.stats_pages]
        return [*pages, *super().get_urls()]

    def each_context(self, request: HttpRequest) -> dict[str, Any]:
        return {**super().each_context(request), "stats_pages": self.stats_pages}


class ClawSiteAdminConfig(AdminConfig):
    default_site = "tasks_app.admin_site.ClawSiteAdminSite"
