"""Limits on running work, in the claim: concurrency and rate per tool, no starvation, a held
task stays queued with no attempt spent, seeding from CLAWSITE_LIMITS. (Across real worker
processes: tests/test_limits_e2e.py.)"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from tasks_app import limits, store
from tasks_app.models import Limit, Task, TaskStatus

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

LEASE = timedelta(seconds=30)


def make(
    owner: Any, tool: str, count: int, priority: int = 0, queue: str = "default"
) -> list[Task]:
    now = timezone.now()
    tasks = [
        Task(
            owner=owner,
            tool=tool,
            args={"i": i},
            priority=priority,
            queue=queue,
            created_at=now + timedelta(microseconds=i),
        )
        for i in range(count)
    ]
    return Task.objects.bulk_create(tasks)


def claim(free: int, worker: str = "w1", queues: tuple[str, ...] = ()) -> list[Task]:
    with transaction.atomic():
        claimed, _, _ = limits.claim_within_limits(worker, free, timezone.now(), LEASE, queues)
    return claimed


def tools_of(tasks: list[Task]) -> list[str]:
    return sorted(t.tool for t in tasks)


def test_concurrency_caps_running_tasks_of_a_tool_and_frees_with_them(alice: Any) -> None:
    Limit.objects.create(key="tool:slow", concurrency=2)
    make(alice, "slow", 5)
    make(alice, "fast", 3)
    first = claim(10)
    assert tools_of(first) == ["fast"] * 3 + ["slow"] * 2
    assert claim(10) == []
    held = Task.objects.filter(tool="slow", status=TaskStatus.QUEUED)
    assert held.count() == 3 and {t.attempts for t in held} == {0}
    # One finishes (any worker): one slot back.
    done = next(t for t in first if t.tool == "slow")
    Task.objects.filter(pk=done.pk).update(status=TaskStatus.SUCCEEDED)
    assert tools_of(claim(10, "w2")) == ["slow"]
    assert claim(10) == []


def test_a_held_tool_does_not_starve_the_others(alice: Any) -> None:
    """The limited tool's tasks come first (higher priority, older): the claim still fills its
    free slots with the rest."""
    Limit.objects.create(key="tool:slow", concurrency=1)
    make(alice, "slow", 50, priority=10)
    make(alice, "fast", 10)
    assert tools_of(claim(5)) == ["fast"] * 4 + ["slow"]
    assert tools_of(claim(5)) == ["fast"] * 5


def test_queue_limits_and_tool_limits_together(alice: Any) -> None:
    """queue:long at 2 and tool:slow at 3: slow tasks of the long queue count against both."""
    Limit.objects.create(key="queue:long", concurrency=2)
    Limit.objects.create(key="tool:slow", concurrency=3)
    make(alice, "slow", 4, priority=5, queue="long")
    make(alice, "fast", 4, priority=4, queue="long")
    make(alice, "slow", 4, priority=3)
    make(alice, "fast", 2)
    first = claim(20)
    in_long = [t for t in first if t.queue == "long"]
    assert len(in_long) == 2 and sum(t.tool == "slow" for t in first) <= 3
    assert sum(t.queue == "default" and t.tool == "fast" for t in first) == 2
    # The slow part's candidates were the long queue's (higher priority), two of which fit: the
    # third slot of slow goes at the next claim, once long is known to be full.
    assert [(t.tool, t.queue) for t in claim(20)] == [("slow", "default")]
    running = Task.objects.filter(status=TaskStatus.RUNNING)
    assert running.filter(queue="long").count() == 2 and running.filter(tool="slow").count() == 3
    assert claim(20) == []


def test_a_worker_of_some_queues_and_paused_queues_under_limits(alice: Any) -> None:
    from tasks_app.models import Queue

    Limit.objects.create(key="tool:slow", concurrency=5)
    make(alice, "slow", 3, queue="a")
    make(alice, "fast", 3, queue="b")
    make(alice, "fast", 3, queue="c")
    Queue.objects.create(name="c", paused=True)
    assert {t.queue for t in claim(20, queues=("b", "c"))} == {"b"}
    assert {t.queue for t in claim(20)} == {"a"}
    assert claim(20) == []


def test_rate_is_a_token_bucket_kept_in_the_row(alice: Any) -> None:
    Limit.objects.create(key="tool:api", rate="3/h")
    make(alice, "api", 5)
    assert len(claim(10)) == 3
    with transaction.atomic():
        claimed, _, wait = limits.claim_within_limits("w2", 10, timezone.now(), LEASE)
    assert claimed == []
    assert wait is not None and 1000 < wait <= 1200  # 3 an hour: a token every 20 minutes
    row = Limit.objects.get(key="tool:api")
    assert row.tokens is not None and row.tokens < 1 and row.refilled_at is not None
    # Twenty minutes later (the bucket's clock moved back), one more may start.
    Limit.objects.filter(pk=row.pk).update(refilled_at=row.refilled_at - 1201)
    assert len(claim(10)) == 1


def test_a_change_of_a_limit_counts_at_the_next_claim(alice: Any) -> None:
    limit = Limit.objects.create(key="tool:slow", concurrency=1)
    make(alice, "slow", 4)
    assert len(claim(10)) == 1
    limit.concurrency = 3
    limit.save()
    assert len(claim(10)) == 2
    limit.delete()
    assert len(claim(10)) == 1


def test_a_dead_workers_slots_come_back_when_its_tasks_are_reaped(alice: Any) -> None:
    from tasks_app.services import reap_expired_leases

    Limit.objects.create(key="tool:slow", concurrency=1)
    make(alice, "slow", 2)
    [taken] = claim(10, "dead-worker")
    assert claim(10) == []
    Task.objects.filter(pk=taken.pk).update(lease_expires_at=timezone.now() - LEASE)
    reap_expired_leases(timezone.now())
    assert len(claim(10, "w2")) == 1


def test_without_limits_the_claim_is_the_plain_statement(
    alice: Any, django_assert_num_queries: Any
) -> None:
    limiter = limits.WorkerLimits()
    assert limiter.active() is False
    with django_assert_num_queries(0):
        assert limiter.active() is False  # not reread within the refresh interval
    Limit.objects.create(key="tool:slow", concurrency=1)
    limiter.checked_at -= 3600
    assert limiter.active() is True


def test_seeding_creates_missing_rows_and_keeps_staff_edits(alice: Any) -> None:
    Limit.objects.create(key="tool:llm_chat", concurrency=9)
    created = limits.seed_limits(
        '{"tool:llm_chat": {"concurrency": 5, "rate": "40/m"}, "queue:long": {"concurrency": 2}}'
    )
    assert created == ["queue:long"]
    assert Limit.objects.get(key="tool:llm_chat").concurrency == 9
    assert Limit.objects.get(key="queue:long").concurrency == 2
    for bad in ('{"nope": {"concurrency": 1}}', '{"tool:x": {"rate": "5/day"}}', "[1]", "{"):
        assert limits.seed_limits(bad) == []
    assert Limit.objects.count() == 2


def test_limited_claim_matches_the_plain_one_when_nothing_binds(alice: Any) -> None:
    make(alice, "a", 6, priority=1)
    make(alice, "b", 6)
    now = timezone.now()
    with transaction.atomic():
        plain = store.claim_runnable_tasks("w1", 8, now, LEASE)
        transaction.set_rollback(True)
    with transaction.atomic():
        limited = store.claim_limited_tasks("w1", 8, now, LEASE, {("tool", "a"): 100})
        transaction.set_rollback(True)
    assert [t.id for t in plain] == [t.id for t in limited]


def test_staff_edit_limits_in_the_admin_and_see_them_live(alice: Any, carol: Any) -> None:
    from django.test import Client

    make(alice, "slow", 3)
    limit = Limit.objects.create(key="tool:slow", concurrency=1)
    claim(10)
    client = Client()
    client.force_login(carol)
    page = client.get("/admin/tasks_app/limit/")
    assert page.status_code == 200 and b"tool:slow" in page.content
    assert b'<td class="field-running_now">1</td>' in page.content
    answer = client.post(
        f"/admin/tasks_app/limit/{limit.pk}/change/",
        {"key": "tool:slow", "concurrency": "3", "rate": "5/m"},
    )
    assert answer.status_code == 302
    limit.refresh_from_db()
    assert (limit.concurrency, limit.rate) == (3, "5/m")
    assert len(claim(10)) == 2
    bad = client.post(
        f"/admin/tasks_app/limit/{limit.pk}/change/",
        {"key": "slow", "concurrency": "3", "rate": "5/day"},
    )
    assert bad.status_code == 200  # the form again, with its errors
    limit.refresh_from_db()
    assert (limit.key, limit.rate) == ("tool:slow", "5/m")


def test_the_dashboard_shows_limits_breakers_and_schedules(alice: Any, carol: Any) -> None:
    from django.test import Client

    from tasks_app.models import Schedule

    Limit.objects.create(key="tool:slow", concurrency=2, rate="5/m")
    Schedule.objects.create(
        name="nightly", owner=alice, tool="file_info", args={"path": "x"}, cron="0 3 * * *"
    )
    make(alice, "slow", 3)
    claim(10)
    staff = Client()
    staff.force_login(carol)
    page = staff.get("/dashboard")
    assert page.status_code == 200
    assert b'id="limits-table"' in page.content and b"tool:slow" in page.content
    assert b"nightly" in page.content
    flow = staff.get("/dashboard/flow").json()
    [limit] = flow["limits"]
    assert (limit["key"], limit["running"], limit["held"]) == ("tool:slow", 2, True)
    assert [s["name"] for s in flow["schedules"]] == ["nightly"]
    assert isinstance(flow["breakers"], list)
    user = Client()
    user.force_login(alice)
    assert user.get("/dashboard/flow").status_code == 403
    from tasks_app.metrics import render_metrics

    body = render_metrics()[0].decode()
    assert 'clawsite_limit_running{limit="tool:slow"} 2.0' in body
    assert 'clawsite_limit_held{limit="tool:slow"} 1.0' in body
    assert "# TYPE clawsite_breaker_state gauge" in body
