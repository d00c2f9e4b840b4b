"""``python manage.py taskstats [--format json|table]``: the numbers of ``GET /api/v1/stats``."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from tasks_app.stats import get_stats


class Command(BaseCommand):
    help = "Print the queue and cache statistics (everyone's), as JSON or a table."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=["json", "table"], default="json")

    def handle(self, *args: Any, **options: Any) -> None:
        stats = get_stats()
        if options["format"] == "json":
            self.stdout.write(json.dumps(stats, indent=2))
            return
        rows: list[tuple[str, Any]] = [(f"queue.{k}", v) for k, v in stats["queue"].items()]
        rows += [
            ("throughput_per_s", stats["throughput_per_s"]),
            ("latency_ms.p50", stats["latency_ms"]["p50"]),
            ("latency_ms.p95", stats["latency_ms"]["p95"]),
            ("workers", len(stats["workers"])),
        ]
        rows += [(f"cache.{k}", stats["cache"][k]) for k in ("hits", "misses", "hit_ratio", "keys")]
        for tool, numbers in sorted(stats["cache"]["by_tool"].items()):
            rows.append(
                (
                    f"cache.{tool}",
                    f"{numbers['hits']} hits, {numbers['misses']} misses, {numbers['keys']} keys",
                )
            )
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            self.stdout.write(f"{name.ljust(width)}  {'-' if value is None else value}")
        for worker in stats["workers"]:
            self.stdout.write(
                f"worker {worker['id']}  running {worker['running']}  last heartbeat {worker['last_heartbeat']}"
            )
