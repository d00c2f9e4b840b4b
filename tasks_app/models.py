"""The durable state of ClawSite: tasks, the API tokens that submit them, the workers that run them.

A task's row is the truth. Its status only moves through the transition methods here and the
batched statements of ``tasks_app.store``; both bump ``version`` so watchers can order changes.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from .queue_names import DEFAULT_QUEUE
from .queue_names import QUEUE_NAME_PATTERN as QUEUE_NAME_PATTERN  # re-exported


def new_task_id() -> str:
    """A UUID version 7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits.

    Not guessable (the random bits), and new ids land at the end of the primary-key index
    instead of a random page of it: with uuid4 a durable insert cost ~60% more (bench)."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10)) & _RANDOM_BITS
    text = f"{value | _VERSION_7:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


# The 80 bits after the timestamp, less the version nibble and the variant's two bits.
_RANDOM_BITS = ((1 << 80) - 1) & ~(0xF << 76) & ~(0b11 << 62)
_VERSION_7 = 0x7 << 76 | 0b10 << 62


class TaskStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED})


# The tool name of a task that runs a Django @task function (tasks_app.django_tasks).
DJANGO_TASK_TOOL = "django_task"


class TaskSource(models.TextChoices):
    """Where a task came from."""

    API = "api"
    PAGE = "page"
    MCP = "mcp"
    DJANGO = "django"
    SCHEDULE = "schedule"


class TaskQuerySet(models.QuerySet["Task"]):
    def visible_to(self, user: Any) -> TaskQuerySet:
        return self if user.is_staff else self.filter(owner=user)

    def queued(self) -> TaskQuerySet:
        return self.filter(status=TaskStatus.QUEUED)

    def running(self) -> TaskQuerySet:
        return self.filter(status=TaskStatus.RUNNING)

    def finished(self) -> TaskQuerySet:
        return self.filter(status__in=TERMINAL_STATUSES)


class Task(models.Model):
    id = models.CharField(primary_key=True, max_length=36, default=new_task_id, editable=False)
    # NULL for tasks enqueued by code (django.tasks): only staff see those.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="tasks",
        null=True,
        blank=True,
    )
    tool = models.CharField(max_length=64)
    queue = models.CharField(max_length=64, default=DEFAULT_QUEUE)
    source = models.CharField(max_length=16, choices=TaskSource.choices, default=TaskSource.API)
    # The schedule that fired this run (source "schedule"). Indexed only where set (a partial
    # index), so an ordinary insert writes no extra B-tree.
    schedule = models.ForeignKey(
        "Schedule",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="runs",
        db_index=False,
    )
    args = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=TaskStatus.choices, default=TaskStatus.QUEUED)
    priority = models.SmallIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    timeout = models.FloatField(default=30.0)
    run_after = models.DateTimeField(null=True, blank=True)
    progress = models.JSONField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    cache_hit = models.BooleanField(default=False)
    # NULL, not "": the per-owner unique constraint must ignore tasks without a key.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)
    worker_id = models.CharField(max_length=64, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    # One entry per finished attempt: {"attempt", "worker_id", "started_at", "finished_at", "error"}.
    attempt_log = models.JSONField(default=list, blank=True)

    objects = TaskQuerySet.as_manager()

    class Meta:
        indexes = [
            # The claim: queued tasks, highest priority first, then oldest; the order matches the
            # claim's ORDER BY so SQLite and PostgreSQL walk the index instead of sorting
            # (tasks_app.store.claim_sql; its query plan is tested).
            models.Index("status", F("priority").desc(), "created_at", name="task_claim_idx"),
            # The claim of a worker limited to some queues: one walk of this index per queue
            # (tasks_app.store.claim_sql). Partial: only queued tasks are in it, so a task writes
            # it when inserted and when claimed, never when it finishes.
            models.Index(
                "queue",
                F("priority").desc(),
                "created_at",
                condition=Q(status=TaskStatus.QUEUED),
                name="task_queue_claim_idx",
            ),
            # The reaper: running tasks by lease expiry. Partial (only running tasks hold a lease),
            # like task_status_finished_idx: a new task writes neither (8 -> 6 B-trees per insert).
            models.Index(
                fields=["status", "lease_expires_at"],
                condition=Q(lease_expires_at__isnull=False),
                name="task_lease_idx",
            ),
            # List pages, newest first: the owner's, the owner's by status, everyone's (staff).
            models.Index(fields=["owner", "-created_at", "-id"], name="task_owner_recent_idx"),
            models.Index(fields=["owner", "status", "-created_at"], name="task_owner_status_idx"),
            models.Index(fields=["-created_at", "-id"], name="task_recent_idx"),
            models.Index(
                fields=["status", "finished_at"],
                condition=Q(finished_at__isnull=False),
                name="task_status_finished_idx",
            ),
            models.Index(
                fields=["schedule", "-created_at"],
                condition=Q(schedule__isnull=False),
                name="task_schedule_idx",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="task_owner_idempotency_key_unique",
            ),
            models.CheckConstraint(
                condition=Q(priority__gte=-100, priority__lte=100), name="task_priority_range"
            ),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.tool} {self.id} ({self.status})"

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("task-detail", args=[self.id])

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    # --- transitions: each changes the row, bumps the version, saves only what changed ---------------

    def _save_changes(self, *fields: str) -> None:
        self.version += 1
        self.save(update_fields=[*fields, "version"])

    def mark_cancelled(self, message: str = "Cancelled by request.") -> None:
        now = timezone.now()
        self.status = TaskStatus.CANCELLED
        self.error = {"type": "cancelled", "message": message}
        self.finished_at = now
        self.lease_expires_at = None
        self.worker_id = ""
        if self.started_at:
            self.duration_ms = (now - self.started_at).total_seconds() * 1000
        self._save_changes(
            "status", "error", "finished_at", "lease_expires_at", "worker_id", "duration_ms"
        )

    def request_cancel(self) -> None:
        """Flag a running task for its worker. Not a change of the task object (the flag is not
        part of it), so the version stays: the worker's next write of the row bumps it, and two
        different states never share a version."""
        self.cancel_requested = True
        Task.objects.filter(pk=self.pk).update(cancel_requested=True)

    def requeue(self) -> None:
        """Queue a failed or cancelled task again, with a fresh budget of attempts."""
        self.status = TaskStatus.QUEUED
        self.max_attempts = max(self.max_attempts, self.attempts + 1)
        self.result = None
        self.error = None
        self.progress = None
        self.cache_hit = False
        self.started_at = None
        self.finished_at = None
        self.duration_ms = None
        self.run_after = None
        self.cancel_requested = False
        self._save_changes(
            "status",
            "max_attempts",
            "result",
            "error",
            "progress",
            "cache_hit",
            "started_at",
            "finished_at",
            "duration_ms",
            "run_after",
            "cancel_requested",
        )


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def active(self) -> ApiTokenQuerySet:
        return self.filter(revoked_at__isnull=True, user__is_active=True)


class ApiToken(models.Model):
    """A Bearer token. Only its SHA-256 digest is stored: the raw token is shown once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True, default="")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(
        max_length=8, editable=False, help_text="First characters, to tell tokens apart."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @classmethod
    def issue(cls, user: Any, name: str = "") -> tuple[ApiToken, str]:
        """Create a token for ``user``; returns it with the raw value, which is not kept."""
        raw = secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, name=name, digest=hash_token(raw), prefix=raw[:8])
        return token, raw

    def revoke(self) -> None:
        self.revoked_at = timezone.now()
        self.save(update_fields=["revoked_at"])


class Queue(models.Model):
    """A named queue's state. Queues exist by use (a task names one); a row is needed only to
    pause one: the claim skips the queues whose row says ``paused``."""

    name = models.CharField(primary_key=True, max_length=64)
    paused = models.BooleanField(default=False)
    changed_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


def heartbeat_stale_after() -> timedelta:
    """How long a worker counts as alive after its last heartbeat: three leases, so one late
    renewal (a slow cycle, a busy database) does not declare it dead."""
    return timedelta(seconds=3 * settings.CLAWSITE_LEASE_SECONDS)


class WorkerHeartbeatQuerySet(models.QuerySet["WorkerHeartbeat"]):
    def alive(self, now: datetime | None = None) -> WorkerHeartbeatQuerySet:
        """The workers whose heartbeat is recent (``heartbeat_stale_after``)."""
        return self.filter(last_heartbeat__gte=(now or timezone.now()) - heartbeat_stale_after())


class WorkerHeartbeat(models.Model):
    """One row per worker process, refreshed on its tick; the reaper and /healthz read it."""

    worker_id = models.CharField(primary_key=True, max_length=64)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    last_heartbeat = models.DateTimeField(default=timezone.now)
    running = models.PositiveIntegerField(default=0)

    objects = WorkerHeartbeatQuerySet.as_manager()

    def __str__(self) -> str:
        return self.worker_id

    def is_alive(self, now: datetime | None = None) -> bool:
        return (now or timezone.now()) - self.last_heartbeat <= heartbeat_stale_after()


LIMIT_KINDS = ("tool", "queue")


def validate_limit_key(key: str) -> None:
    from django.core.exceptions import ValidationError

    kind, _, name = key.partition(":")
    if kind not in LIMIT_KINDS or not name:
        raise ValidationError('A limit is named "tool:<tool name>" or "queue:<queue name>".')


def validate_rate(text: str) -> None:
    from django.core.exceptions import ValidationError

    from .flow import parse_rate

    try:
        parse_rate(text)
    except ValueError as error:
        raise ValidationError(str(error)) from None


class LimitKey:
    """``key`` is ``"<kind>:<name>"``: ``tool:llm_chat``, ``queue:long``."""

    key: str

    @property
    def kind(self) -> str:
        return self.key.partition(":")[0]

    @property
    def name(self) -> str:
        return self.key.partition(":")[2]


class Limit(LimitKey, models.Model):
    """A cap on running work of one tool or one queue, held by every worker (tasks_app.limits):
    at most ``concurrency`` running at once, at most ``rate`` starts per period (token bucket).
    Staff edit these rows in the admin; ``CLAWSITE_LIMITS`` seeds the missing ones."""

    key = models.CharField(
        max_length=80,
        unique=True,
        validators=[validate_limit_key],
        help_text='"tool:llm_chat" or "queue:long".',
    )
    concurrency = models.PositiveIntegerField(
        null=True, blank=True, help_text="At most this many running at once (empty: no cap)."
    )
    rate = models.CharField(
        max_length=32,
        blank=True,
        validators=[validate_rate],
        help_text="At most N starts per period: N/s, N/m or N/h (empty: no cap).",
    )
    # The token bucket's state, written by the workers as they start tasks: the tokens left at
    # ``refilled_at`` (Unix seconds); NULL: a full bucket.
    tokens = models.FloatField(null=True, blank=True, editable=False)
    refilled_at = models.FloatField(null=True, blank=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class CatchUp(models.TextChoices):
    """What a schedule does with due times missed while nothing ran (downtime, a pause)."""

    ONCE = "once", "run once for all missed times"
    SKIP = "skip", "skip missed times"


class Schedule(models.Model):
    """Recurring work: every ``interval_seconds`` or at the times of a ``cron`` expression
    (UTC), a task of ``tool`` with ``args`` for ``owner`` in ``queue``. Fired by whichever
    worker sees it due first, exactly once per due time (tasks_app.schedules)."""

    name = models.CharField(max_length=100, unique=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="schedules",
        null=True,
        blank=True,
        help_text="Whose task each run is (empty only for Django tasks, enqueued by code).",
    )
    tool = models.CharField(max_length=64)
    args = models.JSONField(default=dict, blank=True)
    queue = models.CharField(max_length=64, default="default")
    priority = models.SmallIntegerField(default=0)
    interval_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="Run every this many seconds; or give a cron expression."
    )
    cron = models.CharField(
        max_length=100, blank=True, help_text='Five fields, UTC, e.g. "*/15 * * * *".'
    )
    catch_up = models.CharField(max_length=8, choices=CatchUp.choices, default=CatchUp.ONCE)
    enabled = models.BooleanField(default=True)
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_task_id = models.CharField(max_length=36, blank=True, editable=False)
    runs_fired = models.PositiveIntegerField(default=0, editable=False)
    runs_skipped = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from .schedules import check_schedule

        check_schedule(self)


from .audit import AuditEvent  # noqa: E402, F401  (the audit log's model lives with its API)
