"""Nothing read from Redis is unpickled: the tool cache and Django's cache (sessions) hold JSON,
so a value planted in Redis is data, never code run by the web or worker processes."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache as django_cache

from tools_app import cache
from tools_app.registry import get_tool
from tools_app.workspace import Workspace

from .tool_helpers import prepare_workspace, settle

pytestmark = pytest.mark.timeout(60)


class Planted:
    """What an attacker with Redis access would plant: unpickling it writes a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.mkdir, (str(self.marker),))


async def test_a_planted_pickle_in_the_tool_cache_is_not_run(settings: Any, tmp_path: Path) -> None:
    ws = prepare_workspace(settings)
    (ws / "a.txt").write_text("hello")
    await settle(ws / "a.txt")
    tool = get_tool("hash_file")
    assert tool is not None
    args = tool.parse_args({"path": "a.txt"})
    workspace = Workspace(ws)
    miss = cache.lookup(tool, args, workspace)
    assert miss.key is not None
    answer = {"path": "a.txt", "algorithm": "sha256", "hexdigest": "x", "size": 5}
    cache.store(tool, miss.key, answer)
    entry = cache._cache().make_key(miss.key)
    assert json.loads(cache._redis().get(entry)) == answer  # stored as JSON
    assert cache.lookup(tool, args, workspace).result == answer
    marker = tmp_path / "pwned"
    cache._redis().set(entry, pickle.dumps(Planted(marker)))
    assert cache.lookup(tool, args, workspace).result is None  # a miss, not code
    assert not marker.exists()


def test_djangos_cache_and_so_the_sessions_hold_json() -> None:
    django_cache.set("json-check", {"user": "1", "n": 2})
    client = django_cache.client.get_client()  # type: ignore[attr-defined]  # django-redis's
    raw = client.get(django_cache.make_key("json-check"))
    assert json.loads(raw) == {"user": "1", "n": 2}
