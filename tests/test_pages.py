"""The pages, with personas: what each person sees and changes, and what an outsider never sees."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from tasks_app.models import Task, TaskStatus

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def make_task(owner: Any, **fields: Any) -> Task:
    return Task.objects.create(
        owner=owner,
        tool=fields.pop("tool", "read_file"),
        args=fields.pop("args", {"path": "a.txt"}),
        **fields,
    )


def field_errors(html: str, field_id: str) -> str:
    """The error list rendered beside one field ('' when none)."""
    match = re.search(rf'<ul class="errorlist" id="{field_id}_errors"[^>]*>(.*?)</ul>', html, re.S)
    return match.group(1) if match else ""


# --- who sees what -----------------------------------------------------------------------------------


def test_anonymous_is_sent_to_sign_in() -> None:
    for path in ("/", "/tasks/new", "/tasks/batch", "/tasks/x", "/dashboard"):
        response = Client().get(path)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), path


def test_list_shows_only_own_rows_and_staff_see_all(alice: Any, bob: Any, carol: Any) -> None:
    mine, theirs = make_task(alice), make_task(bob)
    alice_page = client_for(alice).get("/").content.decode()
    assert f"task-{mine.id}" in alice_page and f"task-{theirs.id}" not in alice_page
    bob_page = client_for(bob).get("/").content.decode()
    assert f"task-{theirs.id}" in bob_page and f"task-{mine.id}" not in bob_page
    staff_page = client_for(carol).get("/").content.decode()
    assert f"task-{mine.id}" in staff_page and f"task-{theirs.id}" in staff_page


def test_another_users_task_page_and_buttons_are_404(alice: Any, bob: Any) -> None:
    task = make_task(alice)
    as_bob = client_for(bob)
    assert as_bob.get(f"/tasks/{task.id}").status_code == 404
    assert as_bob.post(f"/tasks/{task.id}/cancel").status_code == 404
    failed = make_task(alice, status=TaskStatus.FAILED)
    assert as_bob.post(f"/tasks/{failed.id}/retry").status_code == 404
    task.refresh_from_db()
    failed.refresh_from_db()
    assert task.status == TaskStatus.QUEUED and failed.status == TaskStatus.FAILED


def test_list_filters_by_status_and_tool(alice: Any) -> None:
    read = make_task(alice)
    listing = make_task(alice, tool="list_directory", args={})
    done = make_task(alice, status=TaskStatus.SUCCEEDED)
    client = client_for(alice)
    page = client.get("/?status=succeeded").content.decode()
    assert f"task-{done.id}" in page and f"task-{read.id}" not in page
    page = client.get("/?tool=list_directory").content.decode()
    assert f"task-{listing.id}" in page and f"task-{read.id}" not in page
    # Unknown filter values are ignored, not a 500.
    response = client.get("/?status=bogus&tool=nope&page=zz")
    assert response.status_code == 200 and f"task-{read.id}" in response.content.decode()


# --- the submit form ---------------------------------------------------------------------------------


def test_form_fields_come_from_the_tools_schema(alice: Any) -> None:
    html = client_for(alice).get("/tasks/new?tool=read_file").content.decode()
    assert '<label for="id_arg_path">' in html and 'name="arg_path"' in html
    assert 'name="arg_offset" value="0"' in html and 'type="number"' in html
    html = client_for(alice).get("/tasks/new?tool=list_directory").content.decode()
    assert 'type="checkbox" name="arg_recursive"' in html and "arg_offset" not in html


def test_submit_from_fields_creates_the_task(alice: Any) -> None:
    response = client_for(alice).post(
        "/tasks/new",
        {
            "tool": "read_file",
            "arg_path": "notes.txt",
            "arg_encoding": "utf-8",
            "arg_offset": "0",
            "priority": "7",
            "max_attempts": "2",
        },
    )
    task = Task.objects.get(owner=alice)
    assert response.status_code == 302 and response["Location"] == f"/tasks/{task.id}"
    assert task.args == {"path": "notes.txt", "encoding": "utf-8", "offset": 0}
    assert task.priority == 7 and task.max_attempts == 2 and task.status == TaskStatus.QUEUED


def test_submit_errors_appear_beside_the_field_and_create_nothing(alice: Any) -> None:
    client = client_for(alice)
    response = client.post(
        "/tasks/new", {"tool": "read_file", "arg_path": "", "priority": "0", "max_attempts": "3"}
    )
    assert response.status_code == 400 and "required" in field_errors(
        response.content.decode(), "id_arg_path"
    )
    # Caught by the tool's own validator (pydantic), then put back beside its field.
    response = client.post(
        "/tasks/new",
        {"tool": "read_file", "arg_path": "../bob/x", "priority": "0", "max_attempts": "3"},
    )
    assert response.status_code == 400 and field_errors(response.content.decode(), "id_arg_path")
    response = client.post(
        "/tasks/new", {"tool": "read_file", "arg_path": "a", "priority": "500", "max_attempts": "3"}
    )
    assert response.status_code == 400 and field_errors(response.content.decode(), "id_priority")
    assert Task.objects.count() == 0


def test_json_arguments_replace_the_fields(alice: Any) -> None:
    client = client_for(alice)
    response = client.post(
        "/tasks/new",
        {
            "tool": "write_file",
            "args_json": '{"path": "x.txt", "content": "hi"}',
            "priority": "0",
            "max_attempts": "3",
        },
    )
    assert response.status_code == 302
    assert Task.objects.get().args == {"path": "x.txt", "content": "hi"}
    response = client.post(
        "/tasks/new",
        {"tool": "write_file", "args_json": "[1]", "priority": "0", "max_attempts": "3"},
    )
    assert response.status_code == 400 and field_errors(response.content.decode(), "id_args_json")
    response = client.post(
        "/tasks/new",
        {
            "tool": "write_file",
            "args_json": '{"path": "x", "bogus": 1}',
            "priority": "0",
            "max_attempts": "3",
        },
    )
    assert response.status_code == 400 and "bogus" in field_errors(
        response.content.decode(), "id_args_json"
    )
    assert Task.objects.count() == 1


def test_run_after_delays_the_task(alice: Any) -> None:
    later = (timezone.now() + timedelta(hours=1)).replace(microsecond=0)
    client_for(alice).post(
        "/tasks/new",
        {
            "tool": "read_file",
            "arg_path": "a",
            "priority": "0",
            "max_attempts": "3",
            "run_after": later.strftime("%Y-%m-%dT%H:%M:%S"),
        },
    )
    assert Task.objects.get().run_after == later


# --- batches -----------------------------------------------------------------------------------------


def test_batch_is_all_or_nothing_with_errors_per_line(alice: Any) -> None:
    client = client_for(alice)
    good = (
        '{"tool": "read_file", "args": {"path": "a"}}\n\n{"tool": "list_directory", "args": {}}\n'
    )
    response = client.post("/tasks/batch", {"lines": good})
    assert response.status_code == 302 and Task.objects.filter(owner=alice).count() == 2
    bad = '{"tool": "read_file", "args": {"path": "a"}}\nnot json\n{"tool": "nope"}\n{"tool": "read_file", "args": {}}'
    response = client.post("/tasks/batch", {"lines": bad})
    html = response.content.decode()
    assert response.status_code == 400
    assert (
        "Line 2:" in html
        and "Line 3:" in html
        and "unknown_tool" in html
        and "Line 4:" in html
        and "Line 1:" not in html
    )
    assert Task.objects.filter(owner=alice).count() == 2


def test_batch_from_an_uploaded_file(alice: Any) -> None:
    upload = SimpleUploadedFile(
        "tasks.jsonl",
        b'{"tool": "read_file", "args": {"path": "a"}}\n{"tool": "read_file", "args": {"path": "b"}}\n',
    )
    response = client_for(alice).post("/tasks/batch", {"file": upload})
    assert response.status_code == 302
    assert sorted(t.args["path"] for t in Task.objects.filter(owner=alice)) == ["a", "b"]
    response = client_for(alice).post("/tasks/batch", {"lines": ""})
    assert response.status_code == 400 and Task.objects.count() == 2


# --- one task ----------------------------------------------------------------------------------------


def test_cancel_and_retry_buttons(alice: Any) -> None:
    task = make_task(alice)
    client = client_for(alice)
    assert 'id="cancel-button"' in client.get(f"/tasks/{task.id}").content.decode()
    response = client.post(f"/tasks/{task.id}/cancel")
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.status == TaskStatus.CANCELLED
    html = client.get(f"/tasks/{task.id}").content.decode()
    assert 'id="retry-button"' in html and 'id="cancel-button"' not in html
    client.post(f"/tasks/{task.id}/retry")
    task.refresh_from_db()
    assert task.status == TaskStatus.QUEUED
    # A second retry of a queued task is a conflict, shown as a message, not a 500.
    response = client.post(f"/tasks/{task.id}/retry", follow=True)
    assert response.status_code == 200 and "Only failed or cancelled" in response.content.decode()


def test_results_are_rendered_for_people(alice: Any) -> None:
    text = make_task(
        alice,
        status=TaskStatus.SUCCEEDED,
        result={
            "content": "first\nsecond <b>",
            "size": 14,
            "encoding": "utf-8",
            "truncated": False,
        },
    )
    html = client_for(alice).get(f"/tasks/{text.id}").content.decode()
    assert '<th scope="row">2</th><td><pre>second &lt;b&gt;</pre>' in html
    listing = make_task(
        alice,
        tool="list_directory",
        status=TaskStatus.SUCCEEDED,
        result={
            "entries": [
                {
                    "name": "a.txt",
                    "path": "a.txt",
                    "type": "file",
                    "size": 3,
                    "modified": "2026-11-28T20:00:00Z",
                }
            ]
        },
    )
    html = client_for(alice).get(f"/tasks/{listing.id}").content.decode()
    assert '<th scope="col">name</th>' in html and "<td>a.txt</td>" in html
    other = make_task(alice, status=TaskStatus.SUCCEEDED, result={"path": "d", "created": True})
    assert (
        "&quot;created&quot;: true" in client_for(alice).get(f"/tasks/{other.id}").content.decode()
    )


def test_running_task_shows_progress_error_and_attempts(alice: Any) -> None:
    task = make_task(
        alice,
        status=TaskStatus.RUNNING,
        attempts=2,
        progress={"done": 3, "total": 4, "message": "scanning"},
    )
    Task.objects.filter(pk=task.pk).update(
        attempt_log=[
            {
                "attempt": 1,
                "worker_id": "w1",
                "started_at": "s",
                "finished_at": "f",
                "error": {"type": "timeout", "message": "slow"},
            }
        ]
    )
    html = client_for(alice).get(f"/tasks/{task.id}").content.decode()
    assert '<progress id="task-progress" max="100" value="75">' in html and "scanning" in html
    assert "timeout: slow" in html and "<td>w1</td>" in html
    failed = make_task(
        alice, status=TaskStatus.FAILED, error={"type": "not_found", "message": "No such file."}
    )
    assert (
        "<code>not_found</code>: No such file."
        in client_for(alice).get(f"/tasks/{failed.id}").content.decode()
    )


# --- staff -------------------------------------------------------------------------------------------


def test_dashboard_is_staff_only(alice: Any, carol: Any) -> None:
    make_task(alice)
    assert client_for(alice).get("/dashboard").status_code == 403
    html = client_for(carol).get("/dashboard").content.decode()
    assert '<dd data-stat="queue.queued">1</dd>' in html and 'id="chart-throughput"' in html


# --- websockets: an outsider never sees another's event ---------------------------------------------


async def test_outsider_never_receives_another_users_events(
    alice: Any, bob: Any, carol: Any
) -> None:
    from asgiref.sync import sync_to_async
    from channels.testing import WebsocketCommunicator

    from clawsite.asgi import application
    from tasks_app import services

    def watch(user: Any, path: str = "/ws/tasks/") -> WebsocketCommunicator:
        return WebsocketCommunicator(
            application, path, headers=[(b"authorization", f"Bearer {user.raw_token}".encode())]
        )

    async def submit(user: Any) -> Task:
        def run() -> Task:
            validated = services.validate_submission({"tool": "list_directory", "args": {}}, user)
            return services.submit_tasks(user, [validated])[0][0]

        return await sync_to_async(run)()

    as_bob, as_carol = watch(bob), watch(carol)
    assert (await as_bob.connect(timeout=10))[0] and (await as_carol.connect(timeout=10))[0]
    try:
        alices = await submit(alice)
        # Staff saw Alice's event, so it was sent; Bob's first frame is then his own task's.
        seen = await as_carol.receive_json_from(timeout=10)
        assert seen["task"]["id"] == alices.id
        bobs = await submit(bob)
        frame = await as_bob.receive_json_from(timeout=10)
        assert frame["type"] == "task.update" and frame["task"]["id"] == bobs.id
        one = watch(bob, f"/ws/tasks/{alices.id}/")
        assert not (await one.connect(timeout=10))[0]
    finally:
        await as_bob.disconnect()
        await as_carol.disconnect()


def test_list_page_queries_do_not_grow_with_rows(alice: Any, carol: Any) -> None:
    client = client_for(carol)
    make_task(alice)
    client.get("/")  # warm: session, user

    def count_queries() -> int:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as captured:
            assert client.get("/").status_code == 200
        return len(captured)

    few = count_queries()
    for _ in range(20):
        make_task(alice)
    assert count_queries() == few
