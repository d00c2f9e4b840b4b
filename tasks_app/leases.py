"""A worker's hold on its tasks: its heartbeat row, the leases of the attempts it runs, and the
reaper that takes back the tasks of workers that stopped renewing theirs (``services``)."""

from __future__ import annotations

import os
import socket
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from . import services
from .models import Task, TaskStatus, WorkerHeartbeat


class Leases:
    """Sync (database thread) work of one worker's housekeeping."""

    def __init__(self, worker_id: str, lease: timedelta) -> None:
        self.worker_id = worker_id
        self.lease = lease

    def heartbeat(self, running: int) -> None:
        WorkerHeartbeat.objects.update_or_create(
            worker_id=self.worker_id,
            defaults={
                "hostname": socket.gethostname()[:255],
                "pid": os.getpid(),
                "last_heartbeat": timezone.now(),
                "running": running,
            },
        )

    def forget(self) -> None:
        """The worker stops: its heartbeat row goes."""
        WorkerHeartbeat.objects.filter(worker_id=self.worker_id).delete()

    def renew_and_reap(self, running: dict[str, int]) -> tuple[list[str], list[str], list[Task]]:
        """Beat, renew the leases of the attempts this worker runs (``{task id: attempt}``), and
        reap expired leases. Returns the attempts to cancel (asked by a user), those no longer
        ours (the lease expired and the reaper gave the task away: the attempt must stop, lest
        two workers run the task), and the tasks reaped."""
        now = timezone.now()
        self.heartbeat(len(running))
        cancel_ids: list[str] = []
        lost_ids: list[str] = []
        if running:
            with transaction.atomic():
                mine = Task.objects.filter(
                    id__in=list(running), worker_id=self.worker_id, status=TaskStatus.RUNNING
                )
                mine.update(lease_expires_at=now + self.lease)
                rows = {
                    task_id: (attempts, cancel_requested)
                    for task_id, attempts, cancel_requested in mine.values_list(
                        "id", "attempts", "cancel_requested"
                    )
                }
            for task_id, attempts in running.items():
                row = rows.get(task_id)
                if row is None or row[0] != attempts:
                    lost_ids.append(task_id)
                elif row[1]:
                    cancel_ids.append(task_id)
        return cancel_ids, lost_ids, services.reap_expired_leases(now)
