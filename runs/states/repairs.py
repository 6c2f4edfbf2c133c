"""Transitions made by the reconciler (workflows/reconciler.py).

Each finds work that a crash, a lost message or a dead worker left undone; each is
guarded so that a repair racing a worker (or a second reconciler) happens once or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.utils import timezone

from .instances import Claim, claim_from_row
from .machine import RunState, TaskState, check_task_transition
from .sql import placeholders, read_datetime, run_key, ts


def take_expired_lease(
    instance_id: int, expired_before: datetime
) -> tuple[Claim, int | None] | None:
    """Take over a running attempt whose lease expired before `expired_before`: its worker
    stopped renewing it. Returns its claim and its process group (None if unknown).

    Clears the lease only while it is still expired, so a worker that renewed it in the
    meantime keeps its attempt. Call it inside the transaction that then completes the
    attempt: the row stays locked until that commits, and the worker's next renewal
    finds the instance moved on.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE runs_taskinstance SET lease_expires_at = NULL"
            " WHERE id = %s AND state = %s AND lease_expires_at < %s"
            " RETURNING run_id, task_id, try_number, max_tries,"
            " (SELECT dag_version_id FROM runs_dagrun WHERE runs_dagrun.id = run_id),"
            " (SELECT params FROM runs_dagrun WHERE runs_dagrun.id = run_id),"
            " worker, started_at, pgid",
            [instance_id, TaskState.RUNNING, ts(expired_before)],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    *fields, started_at, pgid = row
    return claim_from_row(instance_id, (*fields, read_datetime(started_at))), pgid


@dataclass(frozen=True)
class Republish:
    """A queued instance whose message must be sent again."""

    instance_id: int
    try_number: int
    task_id: str
    dag_version_id: int


def _republish(sql: str, params: list) -> list[Republish]:
    with connection.cursor() as cursor:
        cursor.execute(
            sql + " RETURNING id, try_number, task_id,"
            " (SELECT dag_version_id FROM runs_dagrun WHERE runs_dagrun.id = run_id)",
            params,
        )
        return [Republish(*row) for row in cursor.fetchall()]


def requeue_stale_queued(instance_ids: list[int], stale_before: datetime) -> list[Republish]:
    """Stamp queued instances whose message is older than `stale_before` as queued now.

    The caller republishes what this returns; the new stamp keeps the next pass from
    republishing them again before another full interval has passed.
    """
    if not instance_ids:
        return []
    return _republish(
        "UPDATE runs_taskinstance SET queued_at = %s"
        f" WHERE id IN ({placeholders(instance_ids)}) AND state = %s"
        " AND (queued_at IS NULL OR queued_at < %s)",
        [ts(timezone.now()), *instance_ids, TaskState.QUEUED, ts(stale_before)],
    )


def requeue_overdue_retries(instance_ids: list[int], due_before: datetime) -> list[Republish]:
    """up_for_retry -> queued for retries due before `due_before` whose message never came."""
    check_task_transition(TaskState.UP_FOR_RETRY, TaskState.QUEUED)
    if not instance_ids:
        return []
    return _republish(
        "UPDATE runs_taskinstance SET state = %s, queued_at = %s"
        f" WHERE id IN ({placeholders(instance_ids)}) AND state = %s AND next_retry_at < %s",
        [
            TaskState.QUEUED,
            ts(timezone.now()),
            *instance_ids,
            TaskState.UP_FOR_RETRY,
            ts(due_before),
        ],
    )


def finish_drained_run(run_id) -> str | None:
    """running -> success | failed for a run whose countdown of unfinished tasks is 0.

    Returns the final state, or None when the run was not running or still has tasks.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE runs_dagrun SET state = CASE WHEN tasks_failed > 0 THEN %s ELSE %s END,"
            " finished_at = %s WHERE id = %s AND state = %s AND tasks_unfinished = 0"
            " RETURNING state",
            [
                RunState.FAILED,
                RunState.SUCCESS,
                ts(timezone.now()),
                run_key(run_id),
                RunState.RUNNING,
            ],
        )
        row = cursor.fetchone()
    return row[0] if row else None
