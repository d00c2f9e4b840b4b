"""The tool contract and the registry every tool module registers into.

A tool is a class with a ``name``, a pydantic ``Args`` model (its JSON Schema is the API's
``args_schema``), flags, and ``async run(args, ctx)`` returning a JSON-able dict. A problem found
while running is a ``ToolError`` with a stable snake_case ``type``; the task fails with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ToolError
from .fingerprint import CacheBasis
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

    def parse_args(self, raw: dict[str, Any]) -> ToolArgs:
        """Validate ``raw``; raises pydantic's ValidationError."""
        return self.Args.model_validate(raw)

    def describe(self, user: Any = None) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "read_only": self.read_only,
            "cacheable": self.cacheable,
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


def get_tool(name: str) -> Tool | None:
    return _REGISTRY.get(name)


def all_tools() -> list[Tool]:
    return sorted(_REGISTRY.values(), key=lambda tool: tool.name)


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as JSON-able details: where, and what is wrong."""
    return [
        {"loc": ".".join(str(part) for part in error["loc"]), "message": error["msg"]}
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


async def offload(fn: Callable[..., Any], *args: Any) -> Any:
    """Run short blocking work (stat, listdir, realpath, a Redis round trip) off the event loop."""
    return await asyncio.to_thread(fn, *args)


_long_jobs: ThreadPoolExecutor | None = None


async def offload_long(fn: Callable[..., Any], *args: Any) -> Any:
    """Run long blocking work (a search, a hash of a large file) off the event loop, in threads
    of its own: a few slow tools must not take every thread of the default pool, where short
    work (aiofiles, ``offload``) of the other tasks waits."""
    global _long_jobs
    if _long_jobs is None:
        _long_jobs = ThreadPoolExecutor(max_workers=32, thread_name_prefix="clawsite-tool")
    return await asyncio.get_running_loop().run_in_executor(_long_jobs, fn, *args)


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
    "validation_details",
]
