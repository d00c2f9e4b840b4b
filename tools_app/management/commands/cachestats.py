from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tasks_app import audit
from tools_app.cache import cacheable_tool_names, get_cache_stats, invalidate


class Command(BaseCommand):
    help = "Print the tool cache's statistics (as JSON); optionally invalidate first."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--invalidate", metavar="TOOL", help="delete one tool's cached answers")
        parser.add_argument(
            "--pattern", help='with --invalidate or --clear: a glob on "<user>/<path>"'
        )
        parser.add_argument("--clear", action="store_true", help="delete every cached answer")

    def handle(self, *args: Any, **options: Any) -> None:
        tool = options["invalidate"]
        if tool is not None and tool not in cacheable_tool_names():
            raise CommandError(
                f"{tool!r} is not a cacheable tool: {', '.join(cacheable_tool_names())}"
            )
        if tool is not None or options["clear"]:
            deleted = invalidate(tool=tool, pattern=options["pattern"])
            audit.record(
                None, "cache.clear", tool or "*", {"tool": tool, "pattern": options["pattern"]}
            )
            self.stderr.write(f"deleted {deleted} cached answer(s)")
        self.stdout.write(json.dumps(get_cache_stats(), indent=2))
