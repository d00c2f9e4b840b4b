"""Operators' data stays with operators: /metrics and /healthz's details behind the metrics
token (or staff) when one is set; users' stats without worker hosts, pids or global cache
figures."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import AsyncClient, Client

from tasks_app.models import WorkerHeartbeat

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "metrics-token-for-tests"


@pytest.fixture
def token_set(settings: Any) -> None:
    settings.CLAWSITE_METRICS_TOKEN = TOKEN


def test_metrics_need_the_token_or_staff(token_set: None, alice: Any, carol: Any) -> None:
    WorkerHeartbeat.objects.create(worker_id="w-1", hostname="secret-host", pid=4242)
    anonymous = Client().get("/metrics")
    assert anonymous.status_code == 401 and b"secret-host" not in anonymous.content
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    user = Client()
    user.force_login(alice)
    assert user.get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    staff = Client()
    staff.force_login(carol)
    assert staff.get("/metrics").status_code == 200


def test_healthz_details_for_operators_only(token_set: None, carol: Any) -> None:
    anonymous = Client().get("/healthz")
    assert set(anonymous.json()) == {"status"}
    assert anonymous.status_code in (200, 503)
    staff = Client()
    staff.force_login(carol)
    detailed = staff.get("/healthz").json()
    assert {"status", "database", "redis", "workers"} <= set(detailed)
    with_token = Client().get("/healthz", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").json()
    assert "database" in with_token


def test_without_a_token_both_stay_open(alice: Any) -> None:
    assert Client().get("/metrics").status_code == 200
    assert "database" in Client().get("/healthz").json()


async def test_users_stats_show_no_worker_hosts_pids_or_global_cache(
    as_alice: AsyncClient, as_carol: AsyncClient
) -> None:
    await WorkerHeartbeat.objects.acreate(worker_id="w-1", hostname="secret-host", pid=4242)
    mine = (await as_alice.get("/api/v1/stats")).json()
    assert mine["workers"] == [] and "secret-host" not in str(mine)
    assert mine["cache"]["by_tool"] == {} and mine["cache"]["hits"] == 0
    everything = (await as_carol.get("/api/v1/stats")).json()
    assert [w["hostname"] for w in everything["workers"]] == ["secret-host"]
    assert everything["cache"]["by_tool"]  # every cacheable tool, for staff
