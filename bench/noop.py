"""The trivial task every queue in the bench runs: ClawSite's is a tool that returns at once."""

from __future__ import annotations

from typing import Any

from tools_app.registry import Tool, ToolArgs, ToolContext, register


class NoopArgs(ToolArgs):
    n: int = 0


@register
class BenchNoop(Tool):
    name = "bench_noop"
    description = "Benchmarks only: returns its argument."
    Args = NoopArgs
    read_only = True

    async def run(self, args: NoopArgs, ctx: ToolContext) -> dict[str, Any]:
        return {"n": args.n}
