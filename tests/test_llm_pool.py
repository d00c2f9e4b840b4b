"""The LLM endpoint pool and the circuit breakers (shared through real Redis), against local
OpenAI-compatible servers that answer 429 with Retry-After, 503, or slowly, and count."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_llm import FakeLlm
from tools_app.breaker import describe_breakers

from .tool_helpers import fails, run

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def ws(ws: Path, settings: Any) -> Path:
    # Each test its own breakers and buckets (they live in Redis under this prefix).
    settings.REDIS_PREFIX = f"{settings.REDIS_PREFIX}:pool{secrets.token_hex(4)}"
    return ws


@pytest.fixture
def servers() -> Iterator[list[FakeLlm]]:
    made = [FakeLlm("a", delay=0.01), FakeLlm("b", delay=0.01)]
    yield made
    for server in made:
        server.close()


def pool(settings: Any, *endpoints: dict[str, Any]) -> None:
    settings.CLAWSITE_LLM_BASE_URL = ""
    settings.CLAWSITE_LLM_ENDPOINTS = json.dumps(list(endpoints))


def a_first(settings: Any, a: FakeLlm, b: FakeLlm, failing: int | None = 503) -> None:
    """A pool of a (drawn first, nearly always) and b; ``a`` answers ``failing``."""
    if failing is not None:
        a.script = lambda prompt, count: ("status", failing, None)
    pool(
        settings,
        {"name": "a", "base_url": a.url, "weight": 1000},
        {"name": "b", "base_url": b.url, "weight": 0.001},
    )


def state(name: str) -> str:
    found = [b for b in describe_breakers() if b["name"].startswith(f"llm:{name}@")]
    return found[0]["state"] if found else "closed"


async def ask(prompt: str = "hi") -> dict[str, Any]:
    return (await run("llm_chat", {"prompt": prompt})).result


async def test_429_with_retry_after_fails_over_and_rests_the_endpoint(
    ws: Path, settings: Any, servers: list[FakeLlm]
) -> None:
    a, b = servers
    a_first(settings, a, b, failing=None)
    a.script = lambda prompt, count: ("status", 429, 30)
    first = await ask()
    assert first["endpoint"] == "b" and first["content"] == "b:hi"
    assert len(a.prompts) == 1 and state("a") == "open"
    for _ in range(3):
        assert (await ask())["endpoint"] == "b"
    assert len(a.prompts) == 1  # Retry-After honoured: a was not asked again


async def test_breaker_opens_after_consecutive_failures_then_probes_once_and_closes(
    ws: Path, settings: Any, servers: list[FakeLlm]
) -> None:
    settings.CLAWSITE_BREAKER_FAILURES = 2
    settings.CLAWSITE_BREAKER_COOLDOWN_SECONDS = 0.5
    a, b = servers
    a_first(settings, a, b)
    assert (await ask())["endpoint"] == "b"
    assert state("a") == "closed" and len(a.prompts) == 1
    assert (await ask())["endpoint"] == "b"
    assert state("a") == "open" and len(a.prompts) == 2
    assert (await ask())["endpoint"] == "b"
    assert len(a.prompts) == 2  # open: not tried
    await asyncio.sleep(0.6)
    assert state("a") == "half_open"  # cooled down: the next call is the probe
    a.script = None  # a recovers
    assert (await ask())["endpoint"] == "a"
    assert state("a") == "closed" and len(a.prompts) == 3


async def test_a_failed_probe_opens_the_breaker_again(
    ws: Path, settings: Any, servers: list[FakeLlm]
) -> None:
    settings.CLAWSITE_BREAKER_FAILURES = 1
    settings.CLAWSITE_BREAKER_COOLDOWN_SECONDS = 0.3
    a, b = servers
    a_first(settings, a, b)
    await ask()
    assert state("a") == "open"
    await asyncio.sleep(0.4)
    await ask()  # the probe fails
    assert len(a.prompts) == 2 and state("a") == "open"


async def test_connection_errors_fail_over_and_all_failing_is_retryable(
    ws: Path, settings: Any, servers: list[FakeLlm]
) -> None:
    _, b = servers
    dead = "http://127.0.0.1:9/v1"  # discard port: refused
    pool(
        settings,
        {"name": "dead", "base_url": dead, "weight": 1000},
        {"name": "b", "base_url": b.url, "weight": 0.001},
    )
    assert (await ask())["endpoint"] == "b"
    b.script = lambda prompt, count: ("status", 503, None)
    pool(settings, {"name": "dead", "base_url": dead}, {"name": "b", "base_url": b.url})
    error = await fails("llm_chat", {"prompt": "hi"})
    assert error.retryable and "every LLM endpoint failed" in error.message


async def test_calls_spread_by_weight(ws: Path, settings: Any, servers: list[FakeLlm]) -> None:
    a, b = servers
    pool(
        settings,
        {"name": "a", "base_url": a.url, "weight": 3},
        {"name": "b", "base_url": b.url, "weight": 1},
    )
    used = [(await ask())["endpoint"] for _ in range(40)]
    assert used.count("a") > used.count("b") > 0


async def test_an_endpoints_concurrency_holds_and_the_others_take_the_rest(
    ws: Path, settings: Any, servers: list[FakeLlm]
) -> None:
    a, b = servers
    a.delay = b.delay = 0.3
    pool(
        settings,
        {"name": "a", "base_url": a.url, "weight": 1000, "concurrency": 1},
        {"name": "b", "base_url": b.url, "weight": 0.001},
    )
    answers = await asyncio.gather(*(ask(f"q{i}") for i in range(6)))
    assert a.max_holding == 1 and len(a.prompts) >= 1
    assert len(a.prompts) + len(b.prompts) == 6
    assert {answer["endpoint"] for answer in answers} == {"a", "b"}


async def test_a_rate_limited_sole_endpoint_makes_calls_wait_and_the_wait_is_recorded(
    ws: Path, settings: Any, servers: list[FakeLlm]
) -> None:
    a, _ = servers
    pool(settings, {"name": "a", "base_url": a.url, "rate": "2/s"})
    for i in range(4):
        assert (await ask(f"q{i}"))["endpoint"] == "a"
    waits = [x for x in describe_breakers() if x["name"].startswith("llm:a@")]
    assert waits and waits[0].get("waits", 0) >= 1


async def test_http_fetch_opens_a_hosts_breaker(
    ws: Path, settings: Any, servers: list[FakeLlm]
) -> None:
    settings.CLAWSITE_HTTP_ALLOW_PRIVATE = True
    settings.CLAWSITE_BREAKER_FAILURES = 2
    a, _ = servers
    a.script = lambda prompt, count: ("status", 503, None)
    url = a.url  # any path: the fake answers every POST; a GET gets 501 from http.server
    for _ in range(2):
        assert (await run("http_fetch", {"url": url})).result["status"] >= 500
    error = await fails("http_fetch", {"url": url})
    assert error.type == "circuit_open" and error.retryable
    assert any(b["name"].startswith("host:127.0.0.1:") for b in describe_breakers())
