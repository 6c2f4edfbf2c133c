"""Run transitions: the countdown that ends a run, start, cancel, reopen."""

from __future__ import annotations

from django.db import connection, models
from django.utils import timezone

from ..models import DagRun, TaskInstance
from .machine import RunState, TaskState
from .sql import run_key, ts

# The run's countdown, here and in the finish statement (instances.py): `final` more
# instances are final, `failing` of them failed; the last one sets the run's final state.
COUNTDOWN_SET = (
    "tasks_unfinished = tasks_unfinished - %(final)s,"
    " tasks_failed = tasks_failed + %(failing)s,"
    " state = CASE WHEN tasks_unfinished - %(final)s > 0 THEN state"
    "   WHEN tasks_failed + %(failing)s > 0 THEN 'failed' ELSE 'success' END,"
    " finished_at = CASE WHEN tasks_unfinished - %(final)s > 0 THEN finished_at"
    "   ELSE %(now)s END"
)


def count_finished_tasks(run_id, finished: int, failing: int) -> str | None:
    """Count final task instances down on the run; the last one sets its final state.

    Returns the run's new final state when this call finished it, else None.
    """
    if not finished:
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE runs_dagrun SET {COUNTDOWN_SET}"
            " WHERE id = %(run_id)s AND state = 'running' RETURNING state, tasks_unfinished",
            {
                "final": finished,
                "failing": failing,
                "now": ts(timezone.now()),
                "run_id": run_key(run_id),
            },
        )
        row = cursor.fetchone()
    if row and row[1] == 0:
        return row[0]
    return None


def start_run(run_id) -> bool:
    """queued -> running, when the run's first tasks are dispatched."""
    return bool(
        DagRun.objects.filter(id=run_id, state=RunState.QUEUED).update(
            state=RunState.RUNNING, started_at=timezone.now()
        )
    )


# Instances a cancel stops: everything not yet final.
CANCELLABLE = (TaskState.PENDING, TaskState.QUEUED, TaskState.RUNNING, TaskState.UP_FOR_RETRY)


def cancel_run(run_id) -> bool:
    """queued | running -> cancelled, with every unfinished task instance.

    Running attempts notice at their next heartbeat (their lease renewal matches no
    row) and stop their process group; their attempt is then recorded as cancelled.
    """
    now = timezone.now()
    if not DagRun.objects.filter(id=run_id, state__in=[RunState.QUEUED, RunState.RUNNING]).update(
        state=RunState.CANCELLED, finished_at=now
    ):
        return False
    TaskInstance.objects.filter(run_id=run_id, state__in=CANCELLABLE).update(
        state=TaskState.CANCELLED, finished_at=now, lease_expires_at=None, next_retry_at=None
    )
    return True


def reopen_run(run_id, cleared: int, cleared_failing: int) -> bool:
    """A finished run whose tasks were cleared to run again -> running."""
    return bool(
        DagRun.objects.filter(id=run_id)
        .exclude(state=RunState.QUEUED)
        .update(
            state=RunState.RUNNING,
            finished_at=None,
            tasks_unfinished=models.F("tasks_unfinished") + cleared,
            tasks_failed=models.F("tasks_failed") - cleared_failing,
        )
    )
