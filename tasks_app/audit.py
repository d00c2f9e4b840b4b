"""The audit log: who did what to what, when, with which arguments (as a digest), and how it
ended. Kept in the database, read-only in the admin, pruned with the tasks (``prune_tasks``).

One call records one event, from anywhere (sync code; async code through the database thread)::

    audit.record(request.user, "limits.change", target="tool:llm_chat", args={...})
    with audit.recording(user, "task.cancel", target=task.pk):  # outcome: ok, or the error
        ...

Recorded: API tokens created and revoked; tasks cancelled, retried, deleted; the tool cache
cleared; every run_command, run_python and http_fetch execution. Actions are dotted
``<thing>.<verb>`` names.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

# The tools whose every execution is recorded: they reach outside the process.
AUDITED_TOOLS = frozenset({"run_command", "run_python", "http_fetch"})


class AuditEvent(models.Model):
    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Empty: the system (a command, code without a user).",
    )
    actor_name = models.CharField(max_length=150, blank=True, help_text="As it was then.")
    action = models.CharField(max_length=64, db_index=True)
    target = models.CharField(max_length=255, blank=True)
    args_digest = models.CharField(
        max_length=64, blank=True, help_text="sha256 of the arguments' canonical JSON."
    )
    outcome = models.CharField(max_length=64, default="ok")

    class Meta:
        app_label = "tasks_app"
        ordering = ["-at"]
        indexes = [models.Index(fields=["actor", "-at"], name="audit_actor_at")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name or 'system'} {self.action}"


def digest(args: Any) -> str:
    if args is None:
        return ""
    canonical = json.dumps(args, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _actor(actor: Any) -> tuple[int | None, str]:
    """A user, a ToolOwner-like object (``id``, ``username``), or None (the system)."""
    if actor is None or not getattr(actor, "is_authenticated", True):
        return None, ""
    user_id = getattr(actor, "pk", None) or getattr(actor, "id", None)
    name = actor.get_username() if hasattr(actor, "get_username") else actor.username
    return user_id, name


def record(
    actor: Any, action: str, target: Any = "", args: Any = None, outcome: str = "ok"
) -> AuditEvent:
    """Write one event now (its own statement: in a transaction, it shares its fate). Sync."""
    user_id, name = _actor(actor)
    return AuditEvent.objects.create(
        actor_id=user_id,
        actor_name=name,
        action=action,
        target=str(target)[:255],
        args_digest=digest(args),
        outcome=outcome[:64],
    )


@contextlib.contextmanager
def recording(actor: Any, action: str, target: Any = "", args: Any = None) -> Iterator[None]:
    """Record ``action`` after the block: outcome ``ok``, or the error's ``code``/``type``
    (re-raised). Use it outside the block's transaction, so a refusal is recorded too."""
    try:
        yield
    except Exception as error:
        code = getattr(error, "code", None) or getattr(error, "type", None) or "error"
        record(actor, action, target, args, outcome=str(code))
        raise
    record(actor, action, target, args)


def prune(before: Any) -> int:
    return AuditEvent.objects.filter(at__lt=before).delete()[0]
