"""Rows that record what happened rather than move a state: an attempt that ended after
its instance was moved on, dead-letter entries, repairs, worker heartbeats."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.utils import timezone

from ..models import DeadLetter, Repair, TaskAttempt, WorkerHeartbeat
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


def mark_dead_letters_retried(task_instance_ids: Sequence[int], by: str = "") -> int:
    """Stamp the instances' dead-letter entries not yet retried as retried now, by the
    user named `by`. Returns how many were stamped."""
    return DeadLetter.objects.filter(
        task_instance_id__in=list(task_instance_ids), retried_at=None
    ).update(retried_at=timezone.now(), retried_by=by)


def record_repair(
    run_id: Any,
    action: str,
    *,
    task_id: str = "",
    details: dict | None = None,
    tasks: Sequence[str] = (),
    by: str = "",
) -> Repair:
    """Keep a repair of a run on its audit trail (runs.models.Repair)."""
    return Repair.objects.create(
        run_id=run_id,
        action=action,
        task_id=task_id,
        details=details or {},
        tasks=list(tasks),
        by=by,
        at=timezone.now(),
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
