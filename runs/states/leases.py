"""The leases of running attempts: renewed by the worker that holds one
(workflows/leases.py), taken over by the reconciler when it expired.

Neither moves a state; both are guarded on the attempt still running, so a renewal that
matches no row tells its worker the attempt is no longer its own.
"""

from __future__ import annotations

from datetime import datetime

from .instances import Claim, claim_from_row
from .machine import TaskState, transition
from .sql import execute, read_datetime, ts

LEASE = transition("lease", "task", [TaskState.RUNNING], [TaskState.RUNNING])


def renew_lease(
    instance_id: int,
    try_number: int,
    expires_at: datetime,
    pgid: int | None,
    live_output: str | None = None,
) -> bool:
    """Push the lease of a running attempt to `expires_at`, recording `pgid`, the process
    group it runs (None: none yet), and `live_output`, its output so far (None: unchanged
    since the last renewal). False when the attempt is no longer running."""
    rows = execute(
        "UPDATE runs_taskinstance SET lease_expires_at = %(expires_at)s, pgid = %(pgid)s,"
        " live_output = COALESCE(%(live_output)s, live_output)"
        f" WHERE id = %(id)s AND try_number = %(try_number)s AND {LEASE.guard()} RETURNING id",
        {
            **LEASE.params(),
            "expires_at": ts(expires_at),
            "pgid": pgid,
            "live_output": live_output,
            "id": instance_id,
            "try_number": try_number,
        },
    )
    return bool(rows)


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
    rows = execute(
        "UPDATE runs_taskinstance SET lease_expires_at = NULL"
        f" WHERE id = %(id)s AND {LEASE.guard()} AND lease_expires_at < %(expired_before)s"
        " RETURNING run_id, task_id, try_number, max_tries,"
        " (SELECT dag_version_id FROM runs_dagrun WHERE runs_dagrun.id = run_id),"
        " (SELECT params FROM runs_dagrun WHERE runs_dagrun.id = run_id),"
        " worker, started_at, pgid",
        {**LEASE.params(), "id": instance_id, "expired_before": ts(expired_before)},
    )
    if not rows:
        return None
    *fields, started_at, pgid = rows[0]
    return claim_from_row(instance_id, (*fields, read_datetime(started_at))), pgid
