"""The cache from outside: DELETE /api/v1/cache, the admin page, the command, and a real
daphne + worker stack whose worker fills the cache that another process reports on."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.core.management import call_command
from django.test import AsyncClient

from tasks_app.audit import AuditEvent
from tools_app.cache import get_cache_stats, invalidate

from .stack import Stack
from .tool_helpers import prepare_workspace, run, settle

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def cached(settings: Any) -> Path:
    """Two hash_file and two file_info answers of alice's in the cache, and nothing else."""
    invalidate()
    ws = prepare_workspace(settings)
    for name in ("a.txt", "b.txt"):
        (ws / name).write_text(name)
    await settle(ws / "a.txt", ws / "b.txt")
    for name in ("a.txt", "b.txt"):
        await run("hash_file", {"path": name})
        await run("file_info", {"path": name})
    assert get_cache_stats()["keys"] == 4
    return ws


async def test_staff_invalidate_by_tool_pattern_and_all(
    cached: Path, as_carol: AsyncClient
) -> None:
    response = await as_carol.delete("/api/v1/cache?tool=hash_file&pattern=alice/a*")
    assert response.status_code == 200 and response.json() == {"deleted": 1}
    assert get_cache_stats()["by_tool"]["hash_file"]["keys"] == 1
    response = await as_carol.delete("/api/v1/cache?tool=file_info")
    assert response.json() == {"deleted": 2}
    response = await as_carol.delete("/api/v1/cache")
    assert response.json() == {"deleted": 1} and get_cache_stats()["keys"] == 0


async def test_non_staff_and_anonymous_are_refused(cached: Path, as_alice: AsyncClient) -> None:
    response = await as_alice.delete("/api/v1/cache")
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    response = await AsyncClient().delete("/api/v1/cache")
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"
    assert get_cache_stats()["keys"] == 4  # nothing deleted


@pytest.mark.parametrize(
    "query",
    [
        "tool=write_file",
        "tool=nope",
        "tool=",
        "colour=red",
        "pattern=" + "x" * 1001,
        "pattern=a%00b",
    ],
)
async def test_bad_queries_are_400_and_delete_nothing(
    cached: Path, as_carol: AsyncClient, query: str
) -> None:
    response = await as_carol.delete(f"/api/v1/cache?{query}")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_args"
    assert get_cache_stats()["keys"] == 4


async def test_other_methods_are_405(as_carol: AsyncClient) -> None:
    response = await as_carol.get("/api/v1/cache")
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"


async def test_admin_page_shows_stats_and_invalidates(cached: Path, carol: Any, alice: Any) -> None:
    client = AsyncClient()
    await client.aforce_login(carol)
    index = await client.get("/admin/")
    assert b'href="/admin/tools/cache/"' in index.content
    page = await client.get("/admin/tools/cache/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Invalidate hash_file" in text and "Clear the whole cache" in text
    assert page.context["stats"]["by_tool"]["hash_file"]["keys"] == 2
    response = await client.post("/admin/tools/cache/", {"tool": "hash_file"})
    assert response.status_code == 302
    by_tool = get_cache_stats()["by_tool"]
    assert (by_tool["hash_file"]["keys"], by_tool["file_info"]["keys"]) == (0, 2)
    await client.post("/admin/tools/cache/", {"tool": "bogus"})
    assert get_cache_stats()["keys"] == 2
    await client.post("/admin/tools/cache/", {})
    assert get_cache_stats()["keys"] == 0
    outsider = AsyncClient()
    await outsider.aforce_login(alice)
    assert (await outsider.get("/admin/tools/cache/")).status_code == 302  # to the admin login
    assert (await outsider.post("/admin/tools/cache/", {})).status_code == 302


@pytest.mark.django_db(transaction=True)
async def test_cachestats_command(cached: Path, capsys: Any) -> None:
    command = sync_to_async(call_command)  # it writes the audit log: off the event loop
    await command("cachestats")
    assert json.loads(capsys.readouterr().out)["by_tool"]["file_info"]["keys"] == 2
    await command("cachestats", "--invalidate", "file_info")
    assert json.loads(capsys.readouterr().out)["by_tool"]["file_info"]["keys"] == 0
    assert await AuditEvent.objects.filter(action="cache.clear", target="file_info").aexists()


def test_worker_fills_the_cache_and_another_process_reports_it(tmp_path: Path) -> None:
    """End to end: tasks through daphne and a runworker process; the second identical task is a
    cache hit recorded on the task; `manage.py cachestats` (a third process) sees the worker's
    counts; DELETE /api/v1/cache empties it."""
    prefix = f"clawsite-e2e-cache-{uuid.uuid4().hex[:8]}"
    stack = Stack(
        tmp_path / "data", {"CLAWSITE_REDIS_PREFIX": prefix, "CLAWSITE_CACHE_RACY_SECONDS": "0.05"}
    )
    try:
        stack.migrate()
        alice, carol = stack.token("alice"), stack.token("carol", staff=True)
        stack.start_web()
        stack.start_worker()
        (tmp_path / "data/workspaces/alice").mkdir(parents=True)
        (tmp_path / "data/workspaces/alice/big.bin").write_bytes(b"z" * 100_000)
        tasks = []
        for _ in range(2):
            status, task = stack.request(
                "POST", "/api/v1/tasks", alice, {"tool": "hash_file", "args": {"path": "big.bin"}}
            )
            assert status == 202
            tasks += stack.wait_finished(alice, [task["id"]])
        assert [t["status"] for t in tasks] == ["succeeded", "succeeded"], stack.log_text()
        assert [t["cache_hit"] for t in tasks] == [False, True]
        assert tasks[0]["result"] == tasks[1]["result"]
        stats = json.loads(stack.manage("cachestats"))["by_tool"]["hash_file"]
        assert (stats["hits"], stats["misses"], stats["stores"], stats["keys"]) == (1, 1, 1, 1)
        assert stack.request("DELETE", "/api/v1/cache", alice)[0] == 403
        assert stack.request("DELETE", "/api/v1/cache?tool=hash_file", carol) == (
            200,
            {"deleted": 1},
        )
    finally:
        stack.stop()
        client = redis.Redis.from_url(django_settings.REDIS_URL)
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
