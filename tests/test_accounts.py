"""Admin and accounts: unfinished tasks are not deleted around the services, a token's user is
fixed, usernames match their rule whole everywhere, a deleted user's workspace is archived."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from tasks_app.models import ApiToken, Task, TaskStatus
from tools_app.errors import ToolError
from tools_app.workspace import Workspace

from .test_pages_admin import action

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_client(carol: Any) -> Client:
    client = Client()
    client.force_login(carol)
    return client


def test_unfinished_tasks_cannot_be_deleted_from_the_admin(
    admin_client: Client, alice: Any
) -> None:
    queued = Task.objects.create(owner=alice, tool="read_file", args={})
    running = Task.objects.create(owner=alice, tool="read_file", args={}, status=TaskStatus.RUNNING)
    done = Task.objects.create(owner=alice, tool="read_file", args={}, status=TaskStatus.SUCCEEDED)
    changelist = "/admin/tasks_app/task/"
    assert 'value="delete_selected"' not in admin_client.get(changelist).content.decode()
    action(admin_client, changelist, "delete_selected", [queued.pk, running.pk, done.pk])
    assert Task.objects.count() == 3  # the stock bulk delete is gone
    for task in (queued, running):
        assert (
            admin_client.post(f"{changelist}{task.pk}/delete/", {"post": "yes"}).status_code == 403
        )
    assert Task.objects.filter(pk__in=[queued.pk, running.pk]).count() == 2
    admin_client.post(f"{changelist}{done.pk}/delete/", {"post": "yes"})
    assert not Task.objects.filter(pk=done.pk).exists()  # a finished one goes, through services


def test_a_tokens_user_is_fixed_at_creation(admin_client: Client, alice: Any, bob: Any) -> None:
    token = ApiToken.objects.get(user=alice)
    url = f"/admin/tasks_app/apitoken/{token.pk}/change/"
    admin_client.post(url, {"user": str(bob.pk), "name": "moved"})
    token.refresh_from_db()
    assert token.user_id == alice.pk


def test_staff_issue_tokens_only_for_themselves_and_non_staff(
    alice: Any, carol: Any, django_user_model: Any
) -> None:
    dave = django_user_model.objects.create_user("dave", password="pw-dave", is_staff=True)
    dave.user_permissions.add(*Permission.objects.filter(codename__endswith="apitoken"))
    client = Client()
    client.force_login(dave)
    client.post("/admin/tasks_app/apitoken/add/", {"user": str(carol.pk), "name": "x"})
    assert not ApiToken.objects.filter(user=carol, name="x").exists()  # a superuser's: refused
    client.post("/admin/tasks_app/apitoken/add/", {"user": str(alice.pk), "name": "y"})
    assert ApiToken.objects.filter(user=alice, name="y").exists()


@pytest.mark.parametrize("name", ["mallory\n", "mal.lory", "mal lory", "", "x" * 151])
def test_usernames_match_the_rule_whole_everywhere(
    name: str, admin_client: Client, django_user_model: Any
) -> None:
    with pytest.raises((ValidationError, ValueError)):
        django_user_model.objects.create_user(name, password="pw-long-enough-1")
    admin_client.post(
        "/admin/auth/user/add/",
        {"username": name, "password1": "pw-long-enough-1", "password2": "pw-long-enough-1"},
    )
    assert not django_user_model.objects.filter(username=name).exists()
    with pytest.raises(CommandError):
        call_command("create_api_token", name)

    class Named:
        def get_username(self) -> str:
            return name

    with pytest.raises(ToolError) as caught:
        Workspace.for_user(Named())
    assert caught.value.type == "invalid_username"


def test_a_deleted_users_workspace_is_archived_and_a_new_namesake_starts_empty(
    alice: Any, django_user_model: Any
) -> None:
    workspace = Path(settings.CLAWSITE_WORKSPACE_ROOT) / "alice"
    workspace.mkdir(parents=True)
    (workspace / "notes.txt").write_text("alice's")
    alice.delete()
    assert not workspace.exists()
    archived = list((Path(settings.CLAWSITE_WORKSPACE_ROOT) / ".deleted").glob("alice-*"))
    assert [(a / "notes.txt").read_text() for a in archived] == ["alice's"]
    django_user_model.objects.create_user("alice", password="pw-alice-2")
    assert not workspace.exists() or not any(workspace.iterdir())
