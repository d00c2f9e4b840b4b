"""``manage.py prune_tasks``: delete finished tasks past the retention period, in batches
(``tasks_app.services.prune_finished_tasks``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from tasks_app import audit
from tasks_app.services import prune_finished_tasks


class Command(BaseCommand):
    help = "Delete finished tasks (succeeded, failed, cancelled) older than the retention period."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=float,
            default=None,
            metavar="DAYS",
            help="Retention in days (default: CLAWSITE_RESULT_RETENTION_DAYS).",
        )
        parser.add_argument("--batch-size", type=int, default=1000)
        parser.add_argument("--dry-run", action="store_true", help="Count, delete nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        days = options["older_than"]
        if days is None:
            days = settings.CLAWSITE_RESULT_RETENTION_DAYS
            if days <= 0:
                self.stdout.write(
                    "Retention is off (CLAWSITE_RESULT_RETENTION_DAYS=0): nothing pruned."
                )
                return
        if days < 0:
            raise CommandError("--older-than must be 0 or more days.")
        count = prune_finished_tasks(
            timedelta(days=days), options["batch_size"], options["dry_run"]
        )
        if not options["dry_run"]:
            # The audit log is kept as long as the tasks it speaks of.
            pruned = audit.prune(timezone.now() - timedelta(days=days))
            audit.record(None, "task.prune", f"{count} tasks", {"days": days, "audit": pruned})
        verb = "Would delete" if options["dry_run"] else "Deleted"
        self.stdout.write(f"{verb} {count} finished task(s) older than {days:g} day(s).")
