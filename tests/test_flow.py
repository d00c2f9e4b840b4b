"""Backpressure at the door: 429 rate_limited and queue_full, with Retry-After, changing nothing."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

import pytest
import redis
from django.test import AsyncClient

from tasks_app import flow
from tasks_app.models import Task, TaskStatus

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

ONE = {"tool": "read_file", "args": {"path": "notes.txt"}}


@pytest.fixture(autouse=True)
def _fresh_flow_state(settings: Any) -> None:
    # Buckets are keyed by user id, which a new test database may hand out again.
    settings.REDIS_PREFIX = f"{settings.REDIS_PREFIX}:flow{secrets.token_hex(4)}"
    flow.api_rate.local.clear()
    flow.queued_counts.forget()


async def post(client: AsyncClient, path: str, body: Any) -> Any:
    return await client.post(path, data=json.dumps(body), content_type="application/json")


def assert_429(response: Any, code: str) -> None:
    assert response.status_code == 429, response.content
    assert response.json()["error"]["code"] == code
    retry_after = response["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) >= 1


def parse(text: str) -> tuple[int, float]:
    return flow.parse_rate(text)


def test_rates_parse() -> None:
    assert parse("40/m") == (40, 60) and parse("5/s") == (5, 1) and parse("3/h") == (3, 3600)
    assert parse("2/10s") == (2, 10)
    for bad in ("", "0/m", "5", "5/d", "-1/s", "x/m"):
        with pytest.raises(ValueError):
            parse(bad)


async def test_over_the_rate_a_request_is_refused_and_creates_nothing(
    settings: Any, as_alice: AsyncClient, as_bob: AsyncClient, alice: Any
) -> None:
    settings.CLAWSITE_API_RATE = "3/h"
    for _ in range(2):
        assert (await as_alice.get("/api/v1/tools")).status_code == 200
    assert (await post(as_alice, "/api/v1/tasks", ONE)).status_code == 202
    refused = await post(as_alice, "/api/v1/tasks", ONE)
    assert_429(refused, "rate_limited")
    # An hour for 3 tokens: the next one is about 20 minutes away.
    assert 1000 <= int(refused["Retry-After"]) <= 1200
    refused = await post(as_alice, "/api/v1/tasks/batch", {"tasks": [ONE, ONE]})
    assert_429(refused, "rate_limited")
    assert await Task.objects.filter(owner=alice).acount() == 1
    # Per user: bob has his own bucket.
    assert (await post(as_bob, "/api/v1/tasks", ONE)).status_code == 202


async def test_the_bucket_is_shared_through_redis(
    settings: Any, as_alice: AsyncClient, alice: Any
) -> None:
    """What another process took from the bucket (here: straight in Redis) is gone for us too."""
    settings.CLAWSITE_API_RATE = "5/h"
    client = redis.Redis.from_url(settings.REDIS_URL)
    key = f"{settings.REDIS_PREFIX}:rate:api:{alice.pk}"
    client.hset(key, mapping={"tokens": "1", "at": str(client.time()[0])})
    assert (await as_alice.get("/api/v1/tools")).status_code == 200
    assert_429(await as_alice.get("/api/v1/tools"), "rate_limited")


async def test_tokens_taken_in_handfuls_never_exceed_the_bucket(
    settings: Any, as_alice: AsyncClient
) -> None:
    settings.CLAWSITE_API_RATE = "100/h"  # handfuls of at most 5
    assert (await as_alice.get("/api/v1/tools")).status_code == 200
    [(_, _, granted)] = flow.api_rate.local.values()
    assert granted == 1  # a first (or slow) caller takes one token at a time
    started = time.monotonic()
    statuses = [(await as_alice.get("/api/v1/tools")).status_code for _ in range(110)]
    refill = (time.monotonic() - started) * 100 / 3600
    admitted = statuses.count(200) + 1
    assert statuses.count(429) == 111 - admitted
    assert admitted <= 100 + refill + 1
    assert max(granted for _, _, granted in flow.api_rate.local.values()) <= 5


async def test_no_rate_configured_costs_no_redis_key(
    settings: Any, as_alice: AsyncClient, alice: Any
) -> None:
    settings.CLAWSITE_API_RATE = ""
    assert (await as_alice.get("/api/v1/tools")).status_code == 200
    client = redis.Redis.from_url(settings.REDIS_URL)
    assert not client.exists(f"{settings.REDIS_PREFIX}:rate:api:{alice.pk}")


async def test_queue_full_per_user_refuses_the_whole_batch(
    settings: Any, as_alice: AsyncClient, as_bob: AsyncClient, alice: Any, bob: Any
) -> None:
    settings.CLAWSITE_MAX_QUEUED_PER_USER = 5
    assert (await post(as_alice, "/api/v1/tasks/batch", {"tasks": [ONE] * 4})).status_code == 202
    refused = await post(as_alice, "/api/v1/tasks/batch", {"tasks": [ONE] * 2})
    assert_429(refused, "queue_full")
    assert await Task.objects.filter(owner=alice).acount() == 4
    assert (await post(as_alice, "/api/v1/tasks", ONE)).status_code == 202
    assert_429(await post(as_alice, "/api/v1/tasks", ONE), "queue_full")
    assert await Task.objects.filter(owner=alice).acount() == 5
    assert (await post(as_bob, "/api/v1/tasks", ONE)).status_code == 202
    # A task that leaves the queue makes room at once (near the limit the count is exact).
    first = await Task.objects.filter(owner=alice).afirst()
    assert first is not None
    assert (await as_alice.post(f"/api/v1/tasks/{first.id}/cancel")).status_code == 200
    assert (await post(as_alice, "/api/v1/tasks", ONE)).status_code == 202


async def test_queue_full_in_all(
    settings: Any, as_alice: AsyncClient, as_bob: AsyncClient, bob: Any
) -> None:
    settings.CLAWSITE_MAX_QUEUED = 3
    assert (await post(as_alice, "/api/v1/tasks/batch", {"tasks": [ONE] * 2})).status_code == 202
    assert (await post(as_bob, "/api/v1/tasks", ONE)).status_code == 202
    assert_429(await post(as_bob, "/api/v1/tasks", ONE), "queue_full")
    assert await Task.objects.filter(status=TaskStatus.QUEUED).acount() == 3
    assert await Task.objects.filter(owner=bob).acount() == 1


async def test_tasks_queued_behind_our_back_count_once_the_estimate_is_read_again(
    settings: Any, as_alice: AsyncClient, alice: Any, monkeypatch: Any
) -> None:
    """Another process's inserts: the estimate sees them at its next read (at most
    COUNT_MAX_AGE later), and then the exact count near the limit decides."""
    monkeypatch.setattr(flow, "COUNT_MAX_AGE", 0.05)
    settings.CLAWSITE_MAX_QUEUED_PER_USER = 10
    assert (await post(as_alice, "/api/v1/tasks", ONE)).status_code == 202
    await Task.objects.abulk_create(
        [Task(owner=alice, tool="read_file", args={}) for _ in range(8)]
    )
    await asyncio.sleep(0.1)
    assert (await post(as_alice, "/api/v1/tasks", ONE)).status_code == 202
    assert_429(await post(as_alice, "/api/v1/tasks", ONE), "queue_full")
    assert await Task.objects.filter(owner=alice).acount() == 10


def test_no_queue_limit_costs_no_query(settings: Any, alice: Any) -> None:
    settings.CLAWSITE_MAX_QUEUED_PER_USER = 0
    settings.CLAWSITE_MAX_QUEUED = 0
    assert flow.queued_counts.make_room(alice.pk, 1000) is None
    assert flow.queued_counts.read_at == float("-inf")  # the counts were never read
