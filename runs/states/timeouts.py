"""A run past its deadline (run_timeout, CONTRACT section 7): the run fails, its running
attempts are stopped with the error "run timed out", and its other unfinished tasks become
upstream_failed. Nothing of it keeps running: a stopped attempt's next lease renewal
matches no row, and its worker stops its process group (workflows/leases.py).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from django.db import transaction

from ..models import TaskAttempt
from . import slots
from .instances import Cancelled, lock_unfinished, worker_host
from .machine import RunState, TaskState, transition
from .sql import any_of, execute, id_list, on_postgres, read_datetime, run_key, ts

RUN_TIMED_OUT = "run timed out"

TIME_OUT_RUN = transition("time_out_run", "run", [RunState.RUNNING], [RunState.FAILED])
TIME_OUT_RUNNING = transition("time_out_running", "task", [TaskState.RUNNING], [TaskState.FAILED])
TIME_OUT_WAITING = transition(
    "time_out_waiting",
    "task",
    [TaskState.PENDING, TaskState.QUEUED, TaskState.UP_FOR_RETRY],
    [TaskState.UPSTREAM_FAILED],
)


def time_out_run(run_id: Any, now: datetime) -> Cancelled | None:
    """running -> failed for a run whose deadline_at is at or before `now`, with its
    unfinished task instances (one transaction). Returns what was stopped (and the pool
    slots given back), or None when the run was not running past its deadline."""
    with transaction.atomic():
        # Instances first (a finish's order), so no claim slips in between the steps.
        lock_unfinished(run_id)
        rows = execute(
            "UPDATE runs_dagrun SET state = %(target)s, finished_at = %(now)s"
            f" WHERE id = %(id)s AND {TIME_OUT_RUN.guard()} AND deadline_at <= %(now)s"
            " RETURNING id",
            {
                **TIME_OUT_RUN.params(),
                "target": RunState.FAILED,
                "now": ts(now),
                "id": run_key(run_id),
            },
        )
        if not rows:
            return None
        stopped = time_out_running(run_id, now)
        waiting = time_out_waiting(run_id, now)
        # Counted as the finish would have: a repair that clears them counts them back.
        execute(
            "UPDATE runs_dagrun SET tasks_unfinished = 0, tasks_failed = tasks_failed + %(n)s"
            " WHERE id = %(id)s",
            {"n": stopped.instances + waiting, "id": run_key(run_id)},
        )
    return Cancelled(stopped.instances + waiting, stopped.freed_pools)


def time_out_running(run_id: Any, now: datetime) -> Cancelled:
    """The run's running instances -> failed ("run timed out"), each with its attempt's
    row and its slots given back."""
    locked = execute(
        "SELECT id, try_number, worker, started_at, pool FROM runs_taskinstance"
        f" WHERE run_id = %(run_id)s AND {TIME_OUT_RUNNING.guard()}"
        + (" FOR UPDATE" if on_postgres() else ""),
        {**TIME_OUT_RUNNING.params(), "run_id": run_key(run_id)},
    )
    if not locked:
        return Cancelled(0, Counter())
    execute(
        "UPDATE runs_taskinstance SET state = %(target)s, finished_at = %(now)s,"
        " stopped_lease = lease_expires_at, lease_expires_at = NULL, error = %(error)s"
        " WHERE " + any_of("id", "ids"),
        {
            "target": TaskState.FAILED,
            "now": ts(now),
            "error": RUN_TIMED_OUT,
            "ids": id_list([row[0] for row in locked]),
        },
    )
    TaskAttempt.objects.bulk_create(
        [
            TaskAttempt(
                task_instance_id=pk,
                try_number=tries,
                state=TaskState.FAILED,
                worker=worker,
                host=worker_host(worker),
                started_at=read_datetime(started_at),
                finished_at=now,
                error=RUN_TIMED_OUT,
            )
            for pk, tries, worker, started_at, _ in locked
        ],
        ignore_conflicts=True,  # the attempt's own completion may have recorded it first
    )
    pools = Counter(pool for *_, pool in locked if pool)
    slots.give_back(run_id, pools, len(locked))
    return Cancelled(len(locked), pools)


def time_out_waiting(run_id: Any, now: datetime) -> int:
    """The run's pending, queued and up_for_retry instances -> upstream_failed (those
    waiting for a slot taken off the waiting counters)."""
    waiting = execute(
        "SELECT pool FROM runs_taskinstance"
        " WHERE run_id = %(run_id)s AND waiting_slot AND state = %(queued)s",
        {"run_id": run_key(run_id), "queued": TaskState.QUEUED},
    )
    slots.forget_waiting(run_id, [pool for (pool,) in waiting])
    rows = execute(
        "UPDATE runs_taskinstance SET state = %(target)s, finished_at = %(now)s,"
        " next_retry_at = NULL, waiting_slot = %(no)s"
        f" WHERE run_id = %(run_id)s AND {TIME_OUT_WAITING.guard()} RETURNING id",
        {
            **TIME_OUT_WAITING.params(),
            "target": TaskState.UPSTREAM_FAILED,
            "now": ts(now),
            "no": False,
            "run_id": run_key(run_id),
        },
    )
    return len(rows)
