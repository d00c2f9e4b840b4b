"""The tool cache: hits and misses, never stale (changes through ClawSite or behind its back),
the workspace check on hits, statistics in Redis, invalidation by tool and pattern."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings

from tools_app import cache
from tools_app.cache import get_cache_stats, invalidate
from tools_app.fingerprint import tree_basis
from tools_app.workspace import Workspace

from .stack import ROOT
from .tool_helpers import ALICE, fails, run, settle, workspace_of

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def ws(ws: Path, settings: Any) -> Path:
    settings.CLAWSITE_CACHE_READ_FILE_MIN_BYTES = 0  # cache every read here, to test coherence
    invalidate()
    return ws


def delta(before: dict[str, Any], after: dict[str, Any], tool: str) -> dict[str, int]:
    return {
        k: after["by_tool"][tool][k] - before["by_tool"][tool][k]
        for k in ("hits", "misses", "stores", "keys")
    }


async def test_second_call_is_a_hit_with_the_same_answer(ws: Path) -> None:
    (ws / "data.bin").write_bytes(b"payload" * 1000)
    await settle(ws / "data.bin")
    before = get_cache_stats()
    first = await run("hash_file", {"path": "data.bin"})
    second = await run("hash_file", {"path": "./sub/../data.bin".replace("sub/../", "")})
    third = await run("hash_file", {"path": "data.bin", "algorithm": "md5"})
    assert (first.cache_hit, second.cache_hit, third.cache_hit) == (False, True, False)
    assert second.result == first.result and third.result["algorithm"] == "md5"
    after = get_cache_stats()
    assert delta(before, after, "hash_file") == {"hits": 1, "misses": 2, "stores": 2, "keys": 2}
    assert after["by_tool"]["hash_file"]["bytes"] > before["by_tool"]["hash_file"]["bytes"]
    assert after["hits"] - before["hits"] == 1 and after["misses"] - before["misses"] == 2


async def test_the_key_uses_the_resolved_path(ws: Path) -> None:
    (ws / "docs").mkdir()
    (ws / "docs/a.txt").write_text("a")
    (ws / "alias").symlink_to("docs")
    await settle(ws / "docs/a.txt", ws / "docs", ws)
    assert (await run("file_info", {"path": "docs/a.txt"})).cache_hit is False
    assert (await run("file_info", {"path": "docs/../docs/./a.txt"})).cache_hit is True
    assert (await run("file_info", {"path": "alias/a.txt"})).cache_hit is True


# --- never stale ------------------------------------------------------------------------------------


async def test_read_file_changed_behind_our_back_same_size_same_mtime(ws: Path) -> None:
    target = ws / "note.txt"
    target.write_text("version A")
    await settle(target)
    first = await run("read_file", {"path": "note.txt"})
    assert (first.cache_hit, first.result["content"]) == (False, "version A")
    assert (await run("read_file", {"path": "note.txt"})).cache_hit is True
    st = os.stat(target)
    with open(target, "r+") as handle:  # in place: same inode, same size  # noqa: ASYNC230  (a test may block)
        handle.write("version B")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the old mtime back
    assert (os.stat(target).st_size, os.stat(target).st_mtime_ns, os.stat(target).st_ino) == (
        st.st_size,
        st.st_mtime_ns,
        st.st_ino,
    )
    # Read at once (the change is "racily clean": refused by the window) and after the window
    # (only ctime tells the change apart).
    assert (await run("read_file", {"path": "note.txt"})).result["content"] == "version B"
    await settle(target)
    again = await run("read_file", {"path": "note.txt"})
    assert (again.cache_hit, again.result["content"]) == (False, "version B")


async def test_write_file_through_clawsite_is_seen(ws: Path) -> None:
    (ws / "n.txt").write_text("old")
    await settle(ws / "n.txt")
    await run("read_file", {"path": "n.txt"})
    await run("write_file", {"path": "n.txt", "content": "new"})
    again = await run("read_file", {"path": "n.txt"})
    assert (again.cache_hit, again.result["content"]) == (False, "new")


async def test_listing_and_search_see_changes_deep_in_the_tree(ws: Path) -> None:
    (ws / "a/b").mkdir(parents=True)
    (ws / "a/b/deep.txt").write_text("needle one\n")
    await settle(ws / "a/b/deep.txt", ws / "a/b", ws / "a", ws)
    search = {"contains": "needle"}
    assert (await run("search_files", search)).cache_hit is False
    assert (await run("search_files", search)).cache_hit is True
    assert (await run("list_directory", {"recursive": True})).cache_hit is False
    assert (await run("list_directory", {"recursive": True})).cache_hit is True
    st = os.stat(ws / "a/b/deep.txt")
    (ws / "a/b/deep.txt").write_text("needle two\n")  # same size, deep inside
    os.utime(ws / "a/b/deep.txt", ns=(st.st_atime_ns, st.st_mtime_ns))
    await settle(ws / "a/b/deep.txt")
    found = await run("search_files", search)
    assert found.cache_hit is False and found.result["matches"][0]["text"] == "needle two"
    (ws / "a/b/new.txt").write_text("x")
    listing = await run("list_directory", {"recursive": True})
    assert listing.cache_hit is False and "a/b/new.txt" in [
        e["path"] for e in listing.result["entries"]
    ]


def test_the_tree_state_tells_every_change_apart(ws: Path) -> None:
    """The digest of a folder's tree, changed by each kind of change that needs no clock: mode,
    a rename deep inside, a move between folders (same names, other folder), a removal."""
    (ws / "t/a").mkdir(parents=True)
    (ws / "t/b").mkdir()
    for name in ("t/a/x.txt", "t/a/y.txt", "t/b/z.txt"):
        (ws / name).write_text(name)
    workspace = Workspace(ws)

    def state() -> str:
        return tree_basis(workspace, ws / "t", {}, recursive=True, include_hidden=False).state

    seen = [state()]
    assert state() == seen[0]  # stable while nothing changes
    os.chmod(ws / "t/a/x.txt", 0o600)
    seen.append(state())
    os.rename(ws / "t/a/y.txt", ws / "t/a/w.txt")
    seen.append(state())
    os.rename(ws / "t/a/w.txt", ws / "t/b/w.txt")
    seen.append(state())
    os.remove(ws / "t/b/z.txt")
    seen.append(state())
    assert len(set(seen)) == len(seen)


async def test_a_freshly_changed_file_is_not_cached(ws: Path, settings: Any) -> None:
    """Nor counted: the cache is not consulted for it, so it is no miss."""
    settings.CLAWSITE_CACHE_RACY_SECONDS = 2.0  # the default: timestamps are coarse
    (ws / "fresh.txt").write_text("just written")
    before = get_cache_stats()
    for _ in range(2):
        assert (await run("hash_file", {"path": "fresh.txt"})).cache_hit is False
    assert delta(before, get_cache_stats(), "hash_file") == {
        "hits": 0,
        "misses": 0,
        "stores": 0,
        "keys": 0,
    }


async def test_small_reads_bypass_the_cache(ws: Path, settings: Any) -> None:
    settings.CLAWSITE_CACHE_READ_FILE_MIN_BYTES = 1024
    (ws / "small.txt").write_text("tiny")
    await settle(ws / "small.txt")
    before = get_cache_stats()
    for _ in range(2):
        assert (await run("read_file", {"path": "small.txt"})).cache_hit is False
    assert delta(before, get_cache_stats(), "read_file") == {
        "hits": 0,
        "misses": 0,
        "stores": 0,
        "keys": 0,
    }


async def test_errors_are_never_cached(ws: Path) -> None:
    before = get_cache_stats()
    assert (await fails("hash_file", {"path": "missing"})).type == "not_found"
    assert delta(before, get_cache_stats(), "hash_file")["stores"] == 0


# --- the workspace check on hits ----------------------------------------------------------------------


async def test_a_hit_passes_the_workspace_check(ws: Path, settings: Any, tmp_path: Path) -> None:
    """Cached under alice's old workspace, then her workspace moves and the same path leads,
    through a symlink, to the very same file (same resolved path, same stat, same key): now
    outside her workspace, so it is refused, not served from the cache."""
    (ws / "report.txt").write_text("confidential")
    await settle(ws / "report.txt")
    await run("hash_file", {"path": "report.txt"})
    assert (await run("hash_file", {"path": "report.txt"})).cache_hit is True
    settings.CLAWSITE_WORKSPACE_ROOT = tmp_path / "moved"
    (workspace_of(ALICE)).mkdir(parents=True)
    (workspace_of(ALICE) / "report.txt").symlink_to(ws / "report.txt")
    before = get_cache_stats()
    assert (await fails("hash_file", {"path": "report.txt"})).type == "path_outside_workspace"
    assert delta(before, get_cache_stats(), "hash_file")["hits"] == 0


async def test_a_path_that_becomes_a_symlink_out_is_refused(ws: Path, tmp_path: Path) -> None:
    (ws / "docs").mkdir()
    (ws / "docs/f.txt").write_text("mine")
    await settle(ws / "docs/f.txt")
    await run("read_file", {"path": "docs/f.txt"})
    assert (await run("read_file", {"path": "docs/f.txt"})).cache_hit is True
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f.txt").write_text("mine")
    (ws / "docs").rename(ws / "docs.old")
    (ws / "docs").symlink_to(outside)
    assert (await fails("read_file", {"path": "docs/f.txt"})).type == "path_outside_workspace"


# --- statistics and invalidation ---------------------------------------------------------------------


async def _cache_some(ws: Path) -> None:
    for name in ("a1.txt", "a2.txt", "b1.txt"):
        (ws / name).write_text(name)
    await settle(*(ws / n for n in ("a1.txt", "a2.txt", "b1.txt")))
    for name in ("a1.txt", "a2.txt", "b1.txt"):
        await run("hash_file", {"path": name})
        await run("file_info", {"path": name})


async def test_invalidate_by_tool_and_pattern_keeps_the_books(ws: Path) -> None:
    await _cache_some(ws)
    stats = get_cache_stats()
    assert stats["by_tool"]["hash_file"]["keys"] == 3 and stats["by_tool"]["file_info"]["keys"] == 3
    hash_bytes = stats["by_tool"]["hash_file"]["bytes"]
    assert await asyncio.to_thread(invalidate, "hash_file", "alice/a*") == 2
    stats = get_cache_stats()
    assert stats["by_tool"]["hash_file"]["keys"] == 1 and stats["by_tool"]["file_info"]["keys"] == 3
    assert 0 < stats["by_tool"]["hash_file"]["bytes"] < hash_bytes
    assert (await run("hash_file", {"path": "b1.txt"})).cache_hit is True
    assert (await run("hash_file", {"path": "a1.txt"})).cache_hit is False
    assert await asyncio.to_thread(invalidate, None, "bob/*") == 0
    assert await asyncio.to_thread(invalidate) == 5
    stats = get_cache_stats()
    assert stats["keys"] == 0 and stats["bytes"] == 0


async def test_expired_entries_leave_the_counts(ws: Path, settings: Any) -> None:
    settings.CLAWSITE_CACHE_TTL = {**django_settings.CLAWSITE_CACHE_TTL, "file_info": 1}
    (ws / "e.txt").write_text("e")
    await settle(ws / "e.txt")
    await run("file_info", {"path": "e.txt"})
    assert get_cache_stats()["by_tool"]["file_info"]["keys"] == 1
    for _ in range(100):  # Redis expires the entry after 1 s; the index follows
        if get_cache_stats()["by_tool"]["file_info"]["keys"] == 0:
            break
        await asyncio.sleep(0.05)
    stats = get_cache_stats()["by_tool"]["file_info"]
    assert stats["keys"] == 0 and stats["bytes"] == 0


async def test_stats_are_shared_across_processes(ws: Path) -> None:
    """Another process (a worker, say) counts into the same statistics."""
    (ws / "shared.txt").write_text("shared")
    await settle(ws / "shared.txt")
    before = get_cache_stats()
    script = (
        "import asyncio, django; django.setup()\n"
        "from tools_app.runner import ToolOwner, run_tool\n"
        "owner = ToolOwner(1, 'alice')\n"
        "async def main():\n"
        "    for _ in range(3):\n"
        "        print((await run_tool('hash_file', {'path': 'shared.txt'}, owner)).cache_hit)\n"
        "asyncio.run(main())\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "CLAWSITE_REDIS_PREFIX": django_settings.REDIS_PREFIX,
        "CLAWSITE_WORKSPACE_ROOT": str(django_settings.CLAWSITE_WORKSPACE_ROOT),
        "CLAWSITE_CACHE_RACY_SECONDS": "0.05",
    }
    child = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["False", "True", "True"]
    assert delta(before, get_cache_stats(), "hash_file") == {
        "hits": 2,
        "misses": 1,
        "stores": 1,
        "keys": 1,
    }
    assert (await run("hash_file", {"path": "shared.txt"})).cache_hit is True  # stored by the other


async def test_invalidate_never_uses_keys(ws: Path, monkeypatch: Any) -> None:
    """KEYS blocks Redis for the whole keyspace: invalidation scans. The entries still go."""
    await _cache_some(ws)
    client = cache._redis()
    monkeypatch.setattr(type(client), "keys", lambda *a, **k: pytest.fail("KEYS used"))
    assert await asyncio.to_thread(invalidate) == 6
    assert get_cache_stats()["keys"] == 0
    assert (await run("hash_file", {"path": "a1.txt"})).cache_hit is False


async def test_without_redis_the_tools_still_answer(ws: Path, settings: Any, caplog: Any) -> None:
    """The cache is an accelerator: with Redis unreachable a cacheable tool answers uncached."""
    (ws / "r.txt").write_text("r")
    await settle(ws / "r.txt")
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",  # nothing listens on the discard port
            "KEY_PREFIX": django_settings.REDIS_PREFIX,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    for _ in range(2):
        outcome = await run("hash_file", {"path": "r.txt"})
        assert outcome.cache_hit is False and outcome.result["size"] == 1
    assert "tool cache unavailable" in caplog.text


async def test_cacheable_in_the_tool_list_says_what_the_settings_cache(
    ws: Path, settings: Any, as_alice: Any
) -> None:
    """``cacheable`` in GET /tools is what the cache does with the settings in force: read_file
    only when answers it can return reach the minimum size worth caching; a tool without a TTL,
    or every tool with the cache off, says false. Each claim is checked against a real call."""

    async def flags() -> dict[str, bool]:
        tools = (await as_alice.get("/api/v1/tools")).json()["tools"]
        return {t["name"]: t["cacheable"] for t in tools}

    async def cached(tool: str, args: dict[str, Any]) -> bool:
        await run(tool, args)
        return (await run(tool, args)).cache_hit

    (ws / "f.txt").write_text("f")
    await settle(ws / "f.txt")
    settings.CLAWSITE_CACHE_READ_FILE_MIN_BYTES = 16 * 1024 * 1024  # the default
    answer = await flags()
    assert answer["read_file"] is False and await cached("read_file", {"path": "f.txt"}) is False
    assert answer["hash_file"] is True and await cached("hash_file", {"path": "f.txt"}) is True
    assert answer["write_file"] is False
    settings.CLAWSITE_CACHE_READ_FILE_MIN_BYTES = 0
    settings.CLAWSITE_CACHE_TTL = {**django_settings.CLAWSITE_CACHE_TTL, "hash_file": 0}
    answer = await flags()
    assert answer["read_file"] is True and await cached("read_file", {"path": "f.txt"}) is True
    assert answer["hash_file"] is False
    invalidate()
    assert await cached("hash_file", {"path": "f.txt"}) is False
    settings.CLAWSITE_CACHE_ENABLED = False
    assert not any((await flags()).values())
