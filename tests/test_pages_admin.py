"""The admin: steering tasks through the services, the queue statistics page, API tokens."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from tasks_app.auth import user_for_token
from tasks_app.models import ApiToken, Task, TaskStatus

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_client(carol: Any) -> Client:
    client = Client()
    client.force_login(carol)
    return client


def action(client: Client, url: str, name: str, ids: list[Any]) -> Any:
    return client.post(
        url, {"action": name, "_selected_action": [str(i) for i in ids]}, follow=True
    )


def test_index_links_the_queue_statistics(admin_client: Client) -> None:
    html = admin_client.get("/admin/").content.decode()
    assert 'href="/admin/tasks_app/task/stats/"' in html
    assert "Site administration" in html  # the stock index is still there


def test_queue_statistics_page_shows_the_counts(admin_client: Client, alice: Any) -> None:
    Task.objects.create(owner=alice, tool="read_file", args={})
    Task.objects.create(owner=alice, tool="read_file", args={}, status=TaskStatus.FAILED)
    html = admin_client.get("/admin/tasks_app/task/stats/").content.decode()
    assert (
        '<dd data-stat="queue.queued">1</dd>' in html
        and '<dd data-stat="queue.failed">1</dd>' in html
    )
    assert Client().get("/admin/tasks_app/task/stats/").status_code == 302  # signed out


def test_non_staff_cannot_open_the_admin(alice: Any) -> None:
    client = Client()
    client.force_login(alice)
    assert client.get("/admin/tasks_app/task/stats/").status_code == 302


def test_task_list_filters_and_search(admin_client: Client, alice: Any, bob: Any) -> None:
    a = Task.objects.create(owner=alice, tool="read_file", args={"path": "needle.txt"})
    b = Task.objects.create(owner=bob, tool="list_directory", args={}, status=TaskStatus.FAILED)
    base = "/admin/tasks_app/task/"

    def listed(query: str) -> set[str]:
        html = admin_client.get(base + query).content.decode()
        return {t.id for t in (a, b) if t.id in html}

    assert listed("") == {a.id, b.id}
    assert listed("?status__exact=failed") == {b.id}
    assert listed("?tool=read_file") == {a.id}
    assert listed(f"?owner__id__exact={alice.id}") == {a.id}
    assert listed("?q=needle") == {a.id}
    assert listed(f"?q={b.id[-12:]}") == {b.id}  # the random tail (the start is the time)


def test_task_fields_are_read_only_and_adding_is_off(admin_client: Client, alice: Any) -> None:
    task = Task.objects.create(owner=alice, tool="read_file", args={"path": "a"})
    html = admin_client.get(f"/admin/tasks_app/task/{task.id}/change/").content.decode()
    assert 'name="status"' not in html and 'name="args"' not in html and "read_file" in html
    assert admin_client.get("/admin/tasks_app/task/add/").status_code == 403


def test_actions_cancel_retry_and_delete_finished(admin_client: Client, alice: Any) -> None:
    url = "/admin/tasks_app/task/"
    queued = Task.objects.create(owner=alice, tool="read_file", args={})
    done = Task.objects.create(owner=alice, tool="read_file", args={}, status=TaskStatus.SUCCEEDED)
    response = action(admin_client, url, "cancel_tasks", [queued.pk, done.pk])
    assert (
        "Cancelled 1 task(s)." in response.content.decode()
        and "already succeeded" in response.content.decode()
    )
    queued.refresh_from_db()
    assert queued.status == TaskStatus.CANCELLED
    action(admin_client, url, "retry_tasks", [queued.pk])
    queued.refresh_from_db()
    assert queued.status == TaskStatus.QUEUED
    response = action(admin_client, url, "delete_finished_tasks", [queued.pk, done.pk])
    assert "Deleted 1 finished task(s)." in response.content.decode()
    assert list(Task.objects.values_list("pk", flat=True)) == [queued.pk]


def test_tokens_are_created_shown_once_and_revoked(admin_client: Client, alice: Any) -> None:
    response = admin_client.post(
        "/admin/tasks_app/apitoken/add/", {"user": alice.pk, "name": "agent"}, follow=True
    )
    raw = re.search(r"shown once, copy it now\): (\S+?)<", response.content.decode()).group(1)
    token = ApiToken.objects.get(name="agent")
    assert user_for_token(raw) == alice and token.digest != raw and raw not in str(vars(token))
    action(admin_client, "/admin/tasks_app/apitoken/", "revoke_tokens", [token.pk])
    token.refresh_from_db()
    assert token.revoked_at is not None and user_for_token(raw) is None
