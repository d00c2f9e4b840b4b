"""ClawSite as a Model Context Protocol server (``/mcp``): every tool call a durable task.

``transport`` (the ASGI app: HTTP, auth, JSON or SSE), ``server`` (eras, envelope checks, the
method table), ``calls`` (tools/call and the task methods), ``resources`` (workspace files),
``protocol`` (revisions, error codes, the MCP shapes of a task).
"""
