"""The tool contract and the registry every tool module registers into (it also hands tool
authors ``offload``, from ``tools_app.offload``, and ``validation_details``, from ``errors``).

A tool is a class with a ``name``, a pydantic ``Args`` model (its JSON Schema is the API's
``args_schema``), flags, and ``async run(args, ctx)`` returning a JSON-able dict. A problem found
while running is a ``ToolError`` with a stable snake_case ``type``; the task fails with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from django.conf import settings
from pydantic import BaseModel, ConfigDict

from .errors import ToolError, validation_details
from .fingerprint import CacheBasis
from .offload import offload, offload_long
from .workspace import Workspace


class ToolArgs(BaseModel):
    """Base for every tool's arguments: unknown fields are an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


ProgressCallback = Callable[[int | None, int | None, str], None]


@dataclass
class ToolContext:
    """What a running tool may use: its caller's workspace, a deadline, a progress reporter."""

    workspace: Workspace
    user: Any = None
    timeout: float | None = None
    report_progress: ProgressCallback = field(default=lambda done, total, message: None)

    def limit(self, own: float | None) -> float | None:
        """A tool's own ``timeout`` argument, capped by the task's."""
        if own is None:
            return self.timeout
        return own if self.timeout is None else min(own, self.timeout)

    def progress_from_thread(self) -> ProgressCallback:
        """A reporter that blocking code in another thread may call: the worker's reporter
        touches asyncio objects, so each call is handed to this event loop."""
        loop = asyncio.get_running_loop()

        def report(done: int | None, total: int | None, message: str) -> None:
            loop.call_soon_threadsafe(self.report_progress, done, total, message)

        return report


class Tool:
    name: ClassVar[str]
    description: ClassVar[str]
    Args: ClassVar[type[ToolArgs]]
    read_only: ClassVar[bool] = False
    # Hints for agents (MCP tool annotations): may destroy data; reaches outside the workspace.
    destructive: ClassVar[bool] = False
    open_world: ClassVar[bool] = False
    cacheable: ClassVar[bool] = False
    version: ClassVar[int] = 1
    default_timeout: ClassVar[float] = 30.0

    def is_enabled(self, user: Any = None) -> bool:
        """Dangerous tools override this to stay off until configured."""
        return True

    def disabled_reason(self, user: Any = None) -> str | None:
        """Why the tool is off for ``user`` (the ``tool_disabled`` message), or None when on.
        May block once (the program tools probe their sandbox): offload it from a loop."""
        return None if self.is_enabled(user) else f"the tool {self.name!r} is not enabled"

    async def run(self, args: Any, ctx: ToolContext) -> dict[str, Any]:
        raise NotImplementedError

    def cache_basis(self, args: Any, workspace: Workspace) -> CacheBasis | None:
        """Cacheable tools: what the answer depends on (see tools_app.fingerprint), or None to
        leave this call uncached. Blocking. It resolves and checks the path like ``run`` does,
        so a cache hit passes the same workspace check as any call."""
        return None

    def answers_are_cached(self) -> bool:
        """Whether this tool's answers are actually cached with the settings in force (``cacheable``
        says only that they may be): the cache on, a TTL for the tool, and whatever the tool
        itself requires (``read_file``: answers of at least a minimum size it can return)."""
        return (
            self.cacheable
            and settings.CLAWSITE_CACHE_ENABLED
            and int(settings.CLAWSITE_CACHE_TTL.get(self.name, 0)) > 0
        )

    def parse_args(self, raw: dict[str, Any]) -> ToolArgs:
        """Validate ``raw``; raises pydantic's ValidationError."""
        return self.Args.model_validate(raw)

    def describe(self, user: Any = None) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "read_only": self.read_only,
            "cacheable": self.answers_are_cached(),
            "enabled": self.is_enabled(user),
            "args_schema": self.Args.model_json_schema(),
        }


_REGISTRY: dict[str, Tool] = {}
T = TypeVar("T", bound=type[Tool])


def register[T: type[Tool]](cls: T) -> T:
    """Class decorator: make the tool available under its ``name``."""
    if cls.name in _REGISTRY:
        raise ValueError(f"tool {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls()
    return cls


def unregister(name: str) -> None:
    """Remove the tool ``name`` (tests that register tools of their own); absent: nothing."""
    _REGISTRY.pop(name, None)


def get_tool(name: str) -> Tool | None:
    return _REGISTRY.get(name)


def all_tools() -> list[Tool]:
    return sorted(_REGISTRY.values(), key=lambda tool: tool.name)


__all__ = [
    "Tool",
    "ToolArgs",
    "ToolContext",
    "ToolError",
    "all_tools",
    "get_tool",
    "offload",
    "offload_long",
    "register",
    "unregister",
    "validation_details",
]
