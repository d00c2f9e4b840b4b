"""Where a person sees which tasks came through MCP (the ``source`` field): the task list (a
column and a filter), the task page, the admin; and the tools in agents' formats."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tasks_app.models import Task, TaskSource
from tools_app.registry import all_tools

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_list_shows_and_filters_by_source_and_the_task_page_names_it(
    alice: Any, carol: Any
) -> None:
    by_mcp = Task.objects.create(owner=alice, tool="read_file", source=TaskSource.MCP)
    by_api = Task.objects.create(owner=alice, tool="read_file", source=TaskSource.API)
    client = client_for(alice)
    page = client.get("/").content.decode()
    assert '<td class="source source-mcp">mcp</td>' in page
    assert '<td class="source source-api">api</td>' in page
    only_mcp = client.get("/?source=mcp").content.decode()
    assert f"task-{by_mcp.id}" in only_mcp and f"task-{by_api.id}" not in only_mcp
    assert '<option value="mcp" selected>' in only_mcp
    ignored = client.get("/?source=bogus").content.decode()  # an unknown source: no filter
    assert f"task-{by_mcp.id}" in ignored and f"task-{by_api.id}" in ignored
    detail = client.get(f"/tasks/{by_mcp.id}").content.decode()
    assert '<dd id="task-source" class="source source-mcp">mcp</dd>' in detail
    admin = client_for(carol).get("/admin/tasks_app/task/?source__exact=mcp").content.decode()
    assert by_mcp.id in admin and by_api.id not in admin


@pytest.mark.parametrize(
    ("fmt", "name", "schema"),
    [
        ("openai", ("function", "name"), ("function", "parameters")),
        ("anthropic", ("name",), ("input_schema",)),
    ],
)
async def test_tools_in_agent_formats_are_the_enabled_ones_from_the_same_schemas(
    as_alice: Any,
    alice: Any,
    settings: Any,
    fmt: str,
    name: tuple[str, ...],
    schema: tuple[str, ...],
) -> None:
    settings.CLAWSITE_COMMAND_ALLOWLIST = []
    response = await as_alice.get(f"/api/v1/tools?format={fmt}")
    assert response.status_code == 200
    tools = response.json()["tools"]

    def dig(entry: dict[str, Any], path: tuple[str, ...]) -> Any:
        for key in path:
            entry = entry[key]
        return entry

    enabled = {t.name: t for t in all_tools() if t.is_enabled(alice)}
    assert "run_command" not in enabled
    assert [dig(t, name) for t in tools] == sorted(enabled)
    for entry in tools:
        tool = enabled[dig(entry, name)]
        assert dig(entry, schema) == tool.Args.model_json_schema()
        if fmt == "openai":
            assert entry["type"] == "function"
            assert entry["function"]["description"] == tool.description
        else:
            assert entry["description"] == tool.description


async def test_an_unknown_tool_format_is_invalid_args(as_alice: Any) -> None:
    response = await as_alice.get("/api/v1/tools?format=xml")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_args"


def test_the_dashboard_and_stats_count_tasks_by_source(alice: Any, bob: Any, carol: Any) -> None:
    from django.utils import timezone

    from tasks_app.stats import get_stats

    now = timezone.now()
    Task.objects.create(owner=alice, tool="read_file", source=TaskSource.MCP)
    Task.objects.create(owner=alice, tool="read_file", source=TaskSource.MCP, status="running")
    Task.objects.create(
        owner=alice, tool="read_file", source=TaskSource.MCP, status="succeeded", finished_at=now
    )
    Task.objects.create(owner=bob, tool="read_file", source=TaskSource.MCP)
    Task.objects.create(owner=bob, tool="read_file", source=TaskSource.API)

    def by_source(user: Any) -> dict[str, tuple[int, int]]:
        return {r["source"]: (r["active"], r["finished"]) for r in get_stats(user)["sources"]}

    assert by_source(alice) == {
        "api": (0, 0),
        "page": (0, 0),
        "mcp": (2, 1),
        "django": (0, 0),
        "schedule": (0, 0),
    }
    assert by_source(carol)["mcp"] == (3, 1) and by_source(carol)["api"] == (1, 0)
    page = client_for(carol).get("/dashboard").content.decode()
    assert '<a href="/?source=mcp">mcp</a></td><td>3</td><td>1</td>' in page
