"""Run transitions: create, start, the countdown that ends a run, cancel, reopen."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..models import DagRun, RunSlots, TaskInstance
from .instances import COUNT, Cancelled, cancel_instances, lock_unfinished
from .machine import RunState, transition
from .rules import COUNTDOWN_STATES, countdown_set
from .sql import execute, now, run_key, ts


def create_run(
    *,
    dag_pk: int,
    version_id: int,
    triggered_by: str,
    logical_date: datetime,
    params: Mapping[str, Any],
    idempotency_key: str | None,
    latches: Mapping[str, tuple[int, int, str]],
    max_active_tasks: int | None = None,
) -> DagRun:
    """Insert a queued run and its pending task instances; `latches` maps each task id
    to (max_tries, number of upstream tasks, pool or ""). A `max_active_tasks` limit gets
    the run its RunSlots row. Raises IntegrityError on a repeated idempotency key or
    (DAG, logical date)."""
    with transaction.atomic():
        run = DagRun.objects.create(
            dag_id=dag_pk,
            dag_version_id=version_id,
            triggered_by=triggered_by,
            logical_date=logical_date,
            params=dict(params),
            idempotency_key=idempotency_key,
            tasks_unfinished=len(latches),
        )
        TaskInstance.objects.bulk_create(
            TaskInstance(
                run=run, task_id=task_id, max_tries=tries, pending_upstream=upstream, pool=pool
            )
            for task_id, (tries, upstream, pool) in latches.items()
        )
        if max_active_tasks is not None:
            RunSlots.objects.create(run=run, max_active_tasks=max_active_tasks)
    return run


START = transition("start_run", "run", [RunState.QUEUED], [RunState.RUNNING])


def start_run(run_id: Any, timeout_secs: float | None = None) -> datetime | None:
    """queued -> running, when the run's first tasks are dispatched; with a run timeout
    (seconds) its deadline is set from now. Returns the start time, or None when the run
    was not queued."""
    started = timezone.now()
    deadline = started + timedelta(seconds=timeout_secs) if timeout_secs else None
    rows = execute(
        "UPDATE runs_dagrun SET state = %(target)s, started_at = %(now)s,"
        f" deadline_at = %(deadline)s WHERE id = %(id)s AND {START.guard()} RETURNING id",
        {
            **START.params(),
            "target": RunState.RUNNING,
            "now": ts(started),
            "deadline": ts(deadline),
            "id": run_key(run_id),
        },
    )
    return started if rows else None


def _countdown(
    transition_,
    run_id: Any,
    final: int,
    failing: int,
    also: str = "",
    more_set: str = "",
    more_params: dict[str, Any] | None = None,
) -> tuple | None:
    """The countdown statement guarded by `transition_`; `also` adds to its condition,
    `more_set` to its SET (with `more_params`)."""
    rows = execute(
        f"UPDATE runs_dagrun SET {countdown_set()}{more_set}"
        f" WHERE id = %(run_id)s AND {transition_.guard()}{also}"
        " RETURNING state, tasks_unfinished",
        {
            **transition_.params(),
            **COUNTDOWN_STATES,
            **(more_params or {}),
            "final": final,
            "failing": failing,
            "now": now(),
            "run_id": run_key(run_id),
        },
    )
    return rows[0] if rows else None


def count_finished_tasks(run_id: Any, finished: int, failing: int) -> str | None:
    """Count `finished` more final task instances (`failing` of them failed) down on a
    running run; the last one sets its final state (the same countdown as the finish
    statement's). Returns the run's new final state when this call finished it, else None.
    """
    if not finished:
        return None
    row = _countdown(COUNT, run_id, finished, failing)
    return row[0] if row and row[1] == 0 else None


DRAIN = transition(
    "finish_drained_run", "run", [RunState.RUNNING], [RunState.SUCCESS, RunState.FAILED]
)


def finish_drained_run(run_id: Any) -> str | None:
    """running -> success | failed for a run whose countdown of unfinished tasks is 0
    (the countdown with nothing more to count). Returns the final state, or None when
    the run was not running or still has tasks."""
    row = _countdown(DRAIN, run_id, 0, 0, " AND tasks_unfinished = 0")
    return row[0] if row else None


REOPEN = transition(
    "reopen_run",
    "run",
    [RunState.RUNNING, RunState.SUCCESS, RunState.FAILED, RunState.CANCELLED],
    [RunState.RUNNING],
)


def reopen_run(
    run_id: Any, cleared: int, cleared_failing: int, timeout_secs: float | None = None
) -> bool:
    """A run whose `cleared` final task instances (`cleared_failing` of them failed; a
    negative count: instances that became final, or failed, by hand) are repaired ->
    running, its countdown counted back up. A finished run revived so gets its run
    timeout (`timeout_secs`) counted afresh from now (CONTRACT section 9); a running one
    keeps its deadline. The caller ends a run left with nothing to run (finish_drained_run).
    Returns False when the run was queued (nothing of it has started)."""
    deadline = timezone.now() + timedelta(seconds=timeout_secs) if timeout_secs else None
    rows = execute(
        "UPDATE runs_dagrun SET tasks_unfinished = tasks_unfinished + %(cleared)s,"
        " tasks_failed = tasks_failed - %(failing)s, state = %(target)s, finished_at = NULL,"
        " deadline_at = CASE WHEN state = %(target)s THEN deadline_at ELSE %(deadline)s END"
        f" WHERE id = %(run_id)s AND {REOPEN.guard()} RETURNING id",
        {
            **REOPEN.params(),
            "cleared": cleared,
            "failing": cleared_failing,
            "target": RunState.RUNNING,
            "deadline": ts(deadline),
            "run_id": run_key(run_id),
        },
    )
    return bool(rows)


CANCEL_RUN = transition(
    "cancel_run", "run", [RunState.QUEUED, RunState.RUNNING], [RunState.CANCELLED]
)


def cancel_run(run_id: Any) -> Cancelled | None:
    """queued | running -> cancelled, with every unfinished task instance (one
    transaction). None when the run had already finished."""
    with transaction.atomic():
        lock_unfinished(run_id)
        # Nothing is left to count down: a repair that reopens the run counts its
        # cleared tasks up from here.
        rows = execute(
            "UPDATE runs_dagrun SET state = %(target)s, finished_at = %(now)s,"
            f" tasks_unfinished = 0 WHERE id = %(id)s AND {CANCEL_RUN.guard()} RETURNING id",
            {
                **CANCEL_RUN.params(),
                "target": RunState.CANCELLED,
                "now": now(),
                "id": run_key(run_id),
            },
        )
        if not rows:
            return None
        return cancel_instances(run_id)
