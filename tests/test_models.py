"""Task transitions: each saves only what changed, bumps the version, never rewrites created_at."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tasks_app import store
from tasks_app.models import ApiToken, Task, TaskStatus, hash_token

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def make_task(owner: Any, **fields: Any) -> Task:
    return Task.objects.create(owner=owner, tool="read_file", args={"path": "a"}, **fields)


def test_cancel_saves_only_changed_fields(alice: Any) -> None:
    task = make_task(alice)
    created = task.created_at
    with CaptureQueriesContext(connection) as queries:
        task.mark_cancelled()
    [update] = [q["sql"] for q in queries.captured_queries]
    assert update.startswith("UPDATE") and '"args"' not in update and '"created_at"' not in update
    task.refresh_from_db()
    assert task.status == TaskStatus.CANCELLED and task.version == 2
    assert task.error == {"type": "cancelled", "message": "Cancelled by request."}
    assert task.finished_at is not None and task.created_at == created


def test_requeue_clears_the_outcome_and_grants_an_attempt(alice: Any) -> None:
    task = make_task(
        alice,
        status=TaskStatus.FAILED,
        attempts=3,
        max_attempts=3,
        error={"type": "x", "message": "y"},
        result={"a": 1},
    )
    task.requeue()
    task.refresh_from_db()
    assert task.status == TaskStatus.QUEUED and task.max_attempts == 4
    assert task.error is None and task.result is None and task.finished_at is None
    assert task.version == 2


def test_tokens_are_stored_as_sha256_digests(alice: Any) -> None:
    token, raw = ApiToken.issue(alice, name="ci")
    assert len(raw) >= 43  # 32 random bytes, urlsafe base64
    stored = ApiToken.objects.get(pk=token.pk)
    assert stored.digest == hash_token(raw) and raw not in (stored.digest, stored.prefix + "x")
    assert ApiToken.objects.active().filter(pk=token.pk).exists()
    stored.revoke()
    assert not ApiToken.objects.active().filter(pk=token.pk).exists()


def test_token_lookup_finds_active_users_only_and_refreshes_last_used(alice: Any, bob: Any) -> None:
    from tasks_app.auth import LAST_USED_RESOLUTION, user_for_token

    token, raw = ApiToken.issue(alice)
    _, bobs = ApiToken.issue(bob)
    user = user_for_token(raw)
    assert user == alice and user.username == alice.username and user_for_token(bobs) == bob
    token.refresh_from_db()
    first_use = token.last_used_at
    assert first_use is not None
    user_for_token(raw)  # within the resolution: not written again
    token.refresh_from_db()
    assert token.last_used_at == first_use
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first_use - 2 * LAST_USED_RESOLUTION)
    user_for_token(raw)
    token.refresh_from_db()
    assert token.last_used_at > first_use
    assert user_for_token(raw + "x") is None and user_for_token("") is None
    alice.is_active = False
    alice.save()
    assert user_for_token(raw) is None and user_for_token(bobs) == bob


def test_the_claim_walks_its_index_and_looks_rows_up_by_key() -> None:
    """No temporary B-tree sorts the queue, and no status index scan of every queued row."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite query plan")
    params = ["running", "w", None, None, False, str(timezone.now() + timedelta(days=1)), 100]
    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN QUERY PLAN " + store.claim_sql().partition(" RETURNING ")[0], params
        )
        plan = [str(row[-1]) for row in cursor.fetchall()]
    assert any("task_claim_idx" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan
    assert plan[0].startswith("SEARCH tasks_app_task USING INDEX sqlite_autoindex"), plan
