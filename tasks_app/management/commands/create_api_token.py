from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tasks_app import audit
from tasks_app.auth import is_safe_username
from tasks_app.models import ApiToken


class Command(BaseCommand):
    help = "Create an API token for a user (created if missing); prints the raw token once, last."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--staff", action="store_true", help="Make the user staff and superuser."
        )
        parser.add_argument("--name", default="", help="A label for the token.")

    def handle(self, *args: Any, username: str, staff: bool, name: str, **options: Any) -> None:
        if not is_safe_username(username):
            raise CommandError("Usernames may hold only letters, digits, '_' and '-'.")
        User = get_user_model()
        user, created = User.objects.get_or_create(username=username)
        if created:
            user.set_unusable_password()
        if staff:
            user.is_staff = user.is_superuser = True
        user.save()
        token, raw = ApiToken.issue(user, name=name)
        audit.record(None, "token.create", token.prefix, {"user": username})
        if created:
            self.stdout.write(f"Created user {username}{' (staff)' if staff else ''}.")
        self.stdout.write(raw)
