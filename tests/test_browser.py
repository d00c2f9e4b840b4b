"""A real browser (Debian's chromium, driven by Playwright) against a real stack (daphne and a
worker process): sign in, submit from the form and watch the task finish without reloading,
cancel a delayed task, run a batch, open the dashboard and the admin as staff.

On failure a screenshot and the page's HTML are kept under artifacts/ (gitignored)."""

from __future__ import annotations

import contextlib
import re
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.stack import ROOT, Stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "artifacts"
TIMEOUT_MS = 30_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Debian's chromium is not installed (/usr/bin/chromium)"
    ),
]

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed"
)
expect = sync_api.expect

USERS = {
    "erin": ("pw-erin-browser", False),
    "olga": ("pw-olga-browser", False),
    "sam": ("pw-sam-browser", True),
    "lou": ("pw-lou-browser", False),  # locked out by the throttling test: nobody else's
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("browser-stack"))
    try:
        stack.migrate()
        # What scripts/run does before daphne: the admin's CSS must then be served.
        stack.manage("collectstatic", "--no-input", "-v0")
        create = "; ".join(
            f"User.objects.create_user({name!r}, password={password!r}, is_staff={staff}, is_superuser={staff})"
            for name, (password, staff) in USERS.items()
        )
        stack.manage("shell", "-c", f"from django.contrib.auth.models import User; {create}")
        stack.tokens = {"erin": stack.token("erin")}  # type: ignore[attr-defined]
        stack.start_web()
        stack.start_worker()
        yield stack
    except BaseException:
        print(stack.log_text())
        raise
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any, stack: Stack, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(base_url=stack.url)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # Chromium reports what the Content Security Policy refused on the console.
    page.on(
        "console",
        lambda message: "Content Security Policy" in message.text and errors.append(message.text),  # type: ignore[func-returns-value]
    )
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors or CSP violations on the pages: {errors}"


@contextlib.contextmanager
def kept_on_failure(page: Any, stack: Stack, name: str) -> Iterator[None]:
    """Keep a screenshot, the HTML and the stack's logs of a failing browser test."""
    try:
        yield
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        with contextlib.suppress(Exception):
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
            (ARTIFACTS / f"{name}.html").write_text(page.content())
        (ARTIFACTS / f"{name}.log").write_text(stack.log_text())
        raise


def sign_in(page: Any, username: str) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(USERS[username][0])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name=f"Sign out {username}")).to_be_visible()


def mark_page(page: Any) -> None:
    """A marker that a reload would wipe: its survival proves the page changed in place."""
    page.evaluate("window.__notReloaded = true")


def assert_not_reloaded(page: Any) -> None:
    assert page.evaluate("window.__notReloaded === true"), "the page was reloaded"


def utc_local(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def test_submit_from_the_form_and_watch_it_succeed(page: Any, stack: Stack) -> None:
    with kept_on_failure(page, stack, "submit"):
        sign_in(page, "erin")
        page.goto("/tasks/new")
        page.get_by_label("Tool").select_option("write_file")
        expect(page.get_by_role("group", name="Arguments of write_file")).to_be_visible()
        page.get_by_label("Path").fill("hello.txt")
        page.get_by_label("Content").fill("first line\nsecond line")
        # Due in a few seconds, so the page is open (and watching) while it is still queued.
        page.get_by_label("Run after").fill(utc_local(datetime.now(UTC) + timedelta(seconds=3)))
        page.get_by_role("button", name="Submit", exact=True).click()
        expect(page.locator("#task-status")).to_have_text("queued")
        mark_page(page)
        expect(page.locator("#task-status")).to_have_text("succeeded")
        expect(page.locator("#task-result")).to_contain_text("size")
        assert_not_reloaded(page)

        # Read it back: the result shows with line numbers.
        page.goto("/tasks/new?tool=read_file")
        page.get_by_label("Path").fill("hello.txt")
        page.get_by_role("button", name="Submit", exact=True).click()
        expect(page.locator("#task-status")).to_have_text("succeeded")
        second = page.locator("table.lines tr").nth(1)
        expect(second.locator("th")).to_have_text("2")
        expect(second.locator("td")).to_have_text("second line")


def test_form_errors_show_beside_the_field(page: Any, stack: Stack) -> None:
    with kept_on_failure(page, stack, "form-errors"):
        sign_in(page, "erin")
        page.goto("/tasks/new?tool=read_file")
        page.get_by_label("Path").fill("../escape")
        page.get_by_role("button", name="Submit", exact=True).click()
        expect(page.locator("#id_arg_path_errors")).to_be_visible()
        expect(page).to_have_url(re.compile(r"/tasks/new(\?tool=read_file)?$"))


def test_the_list_updates_live(page: Any, stack: Stack) -> None:
    with kept_on_failure(page, stack, "live-list"):
        sign_in(page, "erin")
        page.goto("/")
        expect(page.locator("body[data-live='1']")).to_be_attached()
        mark_page(page)
        status, body = stack.request(
            "POST", "/api/v1/tasks", stack.tokens["erin"], {"tool": "list_directory", "args": {}}
        )  # type: ignore[attr-defined]
        assert status == 202, body
        row = page.locator(f"#task-{body['id']}")
        expect(row).to_be_visible()
        expect(row.locator(".status")).to_have_text("succeeded")
        assert_not_reloaded(page)


def test_cancel_a_delayed_task(page: Any, stack: Stack) -> None:
    with kept_on_failure(page, stack, "cancel"):
        sign_in(page, "erin")
        page.goto("/tasks/new?tool=list_directory")
        page.get_by_label("Run after").fill(utc_local(datetime.now(UTC) + timedelta(hours=1)))
        page.get_by_role("button", name="Submit", exact=True).click()
        expect(page.locator("#task-status")).to_have_text("queued")
        task_id = page.locator("#task-panel").get_attribute("data-task-id")
        page.get_by_role("button", name="Cancel").click()
        expect(page.locator("#task-status")).to_have_text("cancelled")
        expect(page.get_by_role("button", name="Retry")).to_be_visible()
        status, body = stack.request("GET", f"/api/v1/tasks/{task_id}", stack.tokens["erin"])  # type: ignore[attr-defined]
        assert status == 200 and body["status"] == "cancelled"


def test_run_a_batch(page: Any, stack: Stack) -> None:
    with kept_on_failure(page, stack, "batch"):
        sign_in(page, "erin")
        page.goto("/tasks/batch")
        page.get_by_label("Tasks, one JSON object per line").fill(
            '{"tool": "list_directory"}\nnot json\n'
        )
        page.get_by_role("button", name="Submit batch").click()
        expect(page.locator("#batch-errors")).to_contain_text("Line 2")
        lines = "\n".join(
            f'{{"tool": "write_file", "args": {{"path": "batch-{n}.txt", "content": "{n}"}}}}'
            for n in range(3)
        )
        page.get_by_label("Tasks, one JSON object per line").fill(lines)
        page.get_by_role("button", name="Submit batch").click()
        expect(page.get_by_role("status")).to_contain_text("Submitted 3 tasks.")
        page.goto("/?tool=write_file&status=succeeded")
        _, listed = stack.request("GET", "/api/v1/tasks?tool=write_file", stack.tokens["erin"])  # type: ignore[attr-defined]
        batch_ids = [t["id"] for t in listed["tasks"] if t["args"]["path"].startswith("batch-")]
        assert len(batch_ids) == 3
        for task_id in batch_ids:
            # Rows already succeeded are rendered; the others arrive live into the filtered list.
            expect(page.locator(f"#task-{task_id} .status")).to_have_text("succeeded")


def test_staff_dashboard_and_admin(page: Any, stack: Stack) -> None:
    with kept_on_failure(page, stack, "dashboard"):
        token = stack.tokens["erin"]  # type: ignore[attr-defined]
        _, task = stack.request(
            "POST", "/api/v1/tasks", token, {"tool": "list_directory", "args": {}}
        )
        _, task = stack.request("GET", f"/api/v1/tasks/{task['id']}?wait=30", token)
        assert task["status"] == "succeeded"
        sign_in(page, "sam")
        page.goto("/dashboard")
        dashboard = page.locator("#dashboard")
        # Two renders beyond the server-rendered one: frames arrive over /ws/stats/.
        expect(dashboard).to_have_attribute("data-updates", re.compile(r"^([3-9]|\d\d+)$"))
        expect(page.locator("#workers-table tbody tr").first).not_to_have_class("empty")
        expect(page.locator("#chart-throughput polyline")).to_have_count(1)
        # Staff see everyone's tasks: erin's succeeded one is counted.
        expect(page.locator("[data-stat='queue.succeeded']")).to_have_text(
            re.compile(r"^[1-9]\d*$")
        )
        # The admin, with its CSS served under daphne (WhiteNoise), and the statistics page.
        page.goto("/admin/")
        background = page.evaluate(
            "getComputedStyle(document.getElementById('header')).backgroundColor"
        )
        assert background not in ("rgba(0, 0, 0, 0)", "transparent"), background
        page.get_by_role("link", name="Queue statistics").click()
        expect(page.locator("#queue-counts")).to_be_visible()
        with urllib.request.urlopen(
            stack.url + "/static/admin/css/base.css", timeout=10
        ) as response:
            assert response.status == 200 and response.headers["Content-Type"].startswith(
                "text/css"
            )


def test_outsider_never_sees_another_users_task(page: Any, stack: Stack) -> None:
    with kept_on_failure(page, stack, "outsider"):
        sign_in(page, "olga")
        page.goto("/")
        expect(page.locator("body[data-live='1']")).to_be_attached()
        status, body = stack.request(
            "POST", "/api/v1/tasks", stack.tokens["erin"], {"tool": "list_directory", "args": {}}
        )  # type: ignore[attr-defined]
        assert status == 202
        # Erin's task finishes; olga's live list never shows it, and its page is a 404.
        _, done = stack.request("GET", f"/api/v1/tasks/{body['id']}?wait=30", stack.tokens["erin"])  # type: ignore[attr-defined]
        assert done["status"] == "succeeded"
        expect(page.locator(f"#task-{body['id']}")).to_have_count(0)
        assert page.goto(f"/tasks/{body['id']}").status == 404
        assert page.goto("/dashboard").status == 403


def test_every_page_passes_its_content_security_policy(page: Any, stack: Stack) -> None:
    """The pages send a strict CSP (no inline code without the nonce) and break none of it:
    the page fixture fails the test on any violation Chromium reports."""
    with kept_on_failure(page, stack, "csp"):
        sign_in(page, "sam")
        for path in (
            "/",
            "/tasks/new",
            "/dashboard",
            "/admin/",
            "/admin/tasks_app/task/",
            "/admin/tasks_app/task/stats/",
            "/admin/tasks_app/apitoken/add/",
            "/admin/auth/user/",
            "/admin/tools/cache/",
            "/tasks/batch",
        ):
            response = page.goto(path)
            assert response.status == 200, path
            policy = response.headers["content-security-policy"]
            # The nonce is in the policy only of pages that use it (Django's lazy nonce).
            assert "script-src 'self'" in policy and "unsafe-inline" not in policy
            assert "frame-ancestors 'none'" in policy
            page.wait_for_load_state("networkidle")


def test_sign_in_is_throttled_after_repeated_failures(page: Any, stack: Stack) -> None:
    """django-axes: five wrong passwords for one username from one address lock it out, and
    even the right one is refused (429) until the cool-off ends."""
    with kept_on_failure(page, stack, "throttle"):
        for attempt in range(1, 6):
            page.goto("/login/")
            page.get_by_label("Username").fill("lou")
            page.get_by_label("Password").fill("wrong-password")
            page.get_by_role("button", name="Sign in").click()
            if attempt < 5:  # the form again, with its error; the fifth failure locks
                expect(page.get_by_label("Password")).to_be_visible()
        expect(page.get_by_text("Account locked")).to_be_visible()
        page.goto("/login/")
        page.get_by_label("Username").fill("lou")
        page.get_by_label("Password").fill(USERS["lou"][0])
        with page.expect_response(lambda response: response.request.method == "POST") as answer:
            page.get_by_role("button", name="Sign in").click()
        assert answer.value.status == 429
        assert "locked" in page.content().lower()
        page.goto("/")
        expect(page.get_by_role("button", name="Sign out lou")).to_have_count(0)
