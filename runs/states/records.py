"""Rows that record what happened rather than move a state: an attempt that ended after
its instance was moved on, dead-letter entries, worker heartbeats."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.utils import timezone

from ..models import DeadLetter, TaskAttempt, WorkerHeartbeat
from .instances import Claim, worker_host
from .machine import TaskState


def record_late_attempt(
    claim: Claim,
    *,
    pgid: int | None,
    exit_code: int | None,
    stdout: str,
    stderr: str,
    error: str,
) -> None:
    """Record an attempt that ended after its instance was moved on (a cancel, which
    records nothing; the reconciler, which recorded this try as "worker lost"; or this
    very completion retried after its commit's answer was lost), as cancelled. The first
    record of a try stands."""
    TaskAttempt.objects.get_or_create(
        task_instance_id=claim.instance_id,
        try_number=claim.try_number,
        defaults={
            "state": TaskState.CANCELLED,
            "worker": claim.worker,
            "host": worker_host(claim.worker),
            "pgid": pgid,
            "started_at": claim.started_at,
            "finished_at": timezone.now(),
            "exit_code": exit_code,
            "stdout": stdout,
            "stderr": stderr,
            "error": error,
        },
    )


def record_dead_letter(claim: Claim, dag_id: str, error: str) -> DeadLetter:
    """File the instance of a claim that used up its tries in the dead-letter queue."""
    return DeadLetter.objects.create(
        run_id=claim.run_id,
        task_instance_id=claim.instance_id,
        dag_id=dag_id,
        task_id=claim.task_id,
        attempts=claim.try_number,
        error=error,
    )


def mark_dead_letters_retried(task_instance_id: int) -> int:
    """Stamp the instance's dead-letter entries not yet retried as retried now."""
    return DeadLetter.objects.filter(task_instance_id=task_instance_id, retried_at=None).update(
        retried_at=timezone.now()
    )


def record_worker_heartbeat(
    hostname: str, queues: Sequence[str], running: Sequence[int], started_at: datetime | Any
) -> None:
    """A worker's sign of life (/api/v1/workers): its queues and running instance ids."""
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname,
        defaults={
            "pid": os.getpid(),
            "queues": list(queues),
            "running": list(running),
            "started_at": started_at,
            "last_heartbeat": timezone.now(),
        },
    )
