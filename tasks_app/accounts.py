"""Accounts: the one username rule at every entry point, and a deleted user's workspace archived.

Usernames name workspace folders, so they are letters, digits, ``_`` and ``-``, matched whole:
the rule is a validator of the username field (the admin's forms, ``createsuperuser``) and is
checked again before any save (``create_user``, the shell), so no path creates another.

A deleted user's workspace is moved to ``<workspace root>/.deleted/<name>-<time>`` (a name no
user can have), so a new user of the same name starts with an empty one.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import transaction
from django.db.models import Field
from django.db.models.signals import post_delete, pre_save
from django.utils import timezone

from tools_app.workspace import SAFE_USERNAME

logger = logging.getLogger(__name__)

# RegexValidator searches: anchored whole (\A...\Z, not ^...$, as "$" lets a newline through).
username_validator = RegexValidator(
    re.compile(rf"\A(?:{SAFE_USERNAME.pattern})\Z"),
    "Usernames are 1 to 150 letters, digits, '_' or '-' (they name the user's workspace).",
    code="invalid_username",
)

ARCHIVE_FOLDER = ".deleted"


def _check_username(sender: Any, instance: Any, raw: bool = False, **kwargs: Any) -> None:
    if not raw:
        username_validator(instance.get_username())


def archive_workspace(username: str) -> Path | None:
    """Move ``username``'s workspace aside; returns where it went (None if it had none)."""
    root = Path(settings.CLAWSITE_WORKSPACE_ROOT)
    folder = root / username
    if not SAFE_USERNAME.fullmatch(username) or not folder.is_dir():
        return None
    archive = root / ARCHIVE_FOLDER
    archive.mkdir(mode=0o700, exist_ok=True)
    target = archive / f"{username}-{timezone.now():%Y%m%dT%H%M%S%f}"
    os.rename(folder, target)
    logger.info("workspace of deleted user %s archived to %s", username, target)
    return target


def _user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    username = instance.get_username()
    transaction.on_commit(lambda: archive_workspace(username))


def connect() -> None:
    """From AppConfig.ready: the model's field validator and the signal receivers."""
    user_model = get_user_model()
    field = user_model._meta.get_field(user_model.USERNAME_FIELD)
    assert isinstance(field, Field)  # noqa: S101 (for the type checker: the username is a column)
    if username_validator not in field.validators:
        field.validators.append(username_validator)
    pre_save.connect(_check_username, sender=user_model, dispatch_uid="accounts_username")
    post_delete.connect(_user_deleted, sender=user_model, dispatch_uid="accounts_archive")


__all__ = ["ValidationError", "archive_workspace", "connect", "username_validator"]
