"""The tools in the formats agents read: MCP's ``tools/list`` entries, OpenAI function calling,
Anthropic tool use. All from the same ``args_schema``, so they cannot drift apart."""

from __future__ import annotations

from typing import Any

from .registry import Tool


def mcp_tool(tool: Tool, *, task_support: bool = False) -> dict[str, Any]:
    """An entry of MCP's ``tools/list``; ``task_support`` for the 2025-11-25 revision, whose
    clients ask for task-augmented calls only of tools that say so."""
    entry: dict[str, Any] = {
        "name": tool.name,
        "description": tool.description,
        "inputSchema": tool.Args.model_json_schema(),
        "annotations": {
            "readOnlyHint": tool.read_only,
            "destructiveHint": tool.destructive,
            "openWorldHint": tool.open_world,
        },
    }
    if task_support:
        entry["execution"] = {"taskSupport": "optional"}
    return entry


def openai_tool(tool: Tool) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.Args.model_json_schema(),
        },
    }


def anthropic_tool(tool: Tool) -> dict[str, Any]:
    return {
        "name": tool.name,
        "description": tool.description,
        "input_schema": tool.Args.model_json_schema(),
    }


AGENT_FORMATS = {"openai": openai_tool, "anthropic": anthropic_tool}
