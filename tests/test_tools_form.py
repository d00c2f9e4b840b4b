"""The browser form submits every tool of the contract (and says so when one is disabled)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import AsyncClient

from tasks_app.models import Task

pytestmark = pytest.mark.timeout(60)

VALID_ARGS: dict[str, dict[str, Any]] = {
    "read_file": {"path": "notes.txt"},
    "write_file": {"path": "notes.txt", "content": "hi"},
    "list_directory": {"path": ".", "recursive": True},
    "create_directory": {"path": "new"},
    "delete_path": {"path": "old"},
    "file_info": {"path": "notes.txt", "sha256": True},
    "search_files": {"contains": "TODO", "glob": "*.py"},
    "hash_file": {"path": "notes.txt", "algorithm": "md5"},
    "http_fetch": {"url": "https://example.com/"},
    "run_command": {"argv": ["echo", "hi"]},
    "run_python": {"code": "print(1)"},
    "llm_chat": {"prompt": "hello"},
}


def form_for(tool: str, args: dict[str, Any]) -> dict[str, str]:
    """The submit form, its arguments given in the JSON box."""
    return {"tool": tool, "args_json": json.dumps(args), "priority": "0", "max_attempts": "3"}


@pytest.fixture
async def browser(alice: Any) -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(alice)
    return client


@pytest.mark.parametrize("tool", VALID_ARGS)
async def test_every_tool_can_be_submitted_from_the_form(
    browser: AsyncClient, settings: Any, tool: str
) -> None:
    settings.CLAWSITE_COMMAND_ALLOWLIST = ["echo"]
    settings.CLAWSITE_PYTHON_ENABLED = True
    settings.CLAWSITE_LLM_BASE_URL = "http://127.0.0.1:9/v1"
    response = await browser.post("/tasks/new", form_for(tool, VALID_ARGS[tool]))
    assert response.status_code == 302, response.content.decode()[:2000]
    task = await Task.objects.aget(tool=tool)
    assert task.args == VALID_ARGS[tool] and response["Location"] == f"/tasks/{task.id}"


@pytest.mark.parametrize("tool", ["run_command", "run_python", "llm_chat"])
async def test_disabled_tools_are_explained_not_created(
    browser: AsyncClient, settings: Any, tool: str
) -> None:
    settings.CLAWSITE_COMMAND_ALLOWLIST = []
    settings.CLAWSITE_PYTHON_ENABLED = False
    settings.CLAWSITE_LLM_BASE_URL = ""
    response = await browser.post("/tasks/new", form_for(tool, VALID_ARGS[tool]))
    assert response.status_code == 400 and "not enabled" in response.content.decode()
    assert not await Task.objects.filter(tool=tool).aexists()


async def test_bad_arguments_are_shown_on_the_form(browser: AsyncClient) -> None:
    response = await browser.post("/tasks/new", form_for("read_file", {"path": "../escape"}))
    assert response.status_code == 400 and "escapes the workspace" in response.content.decode()
    assert not await Task.objects.aexists()
