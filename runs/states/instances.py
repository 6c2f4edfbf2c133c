"""Task-instance transitions: claim, finish (with the release of downstream latches),
leave pending, retry, clear."""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from ..models import TaskAttempt, TaskInstance
from ..prepared import Statement
from .dag_runs import COUNTDOWN_SET, count_finished_tasks
from .machine import TaskState, TransitionRefused, check_task_transition
from .sql import load_json, placeholders, run_key, ts


@dataclass(frozen=True)
class Claim:
    """What a worker needs to run the attempt it just claimed."""

    instance_id: int
    run_id: str
    task_id: str
    try_number: int
    max_tries: int
    dag_version_id: int
    params: dict
    worker: str
    started_at: datetime

    def log_fields(self, dag_id: str) -> dict:
        """The ids an operator filters engine log lines on, for a record's `extra`."""
        return {
            "run_id": self.run_id,
            "dag_id": dag_id,
            "task_id": self.task_id,
            "try_number": self.try_number,
        }


def worker_host(worker: str) -> str:
    """The host of a Celery worker's node name, `name@host`."""
    return worker.rpartition("@")[2]


def claim_from_row(instance_id: int, row: tuple) -> Claim:
    """A Claim from (run_id, task_id, try_number, max_tries, version_id, params, worker,
    started_at), as the claim's RETURNING gives them."""
    run_id, task_id, tries, max_tries, version_id, params, worker, started_at = row
    return Claim(
        instance_id,
        str(uuid.UUID(str(run_id))),
        task_id,
        tries,
        max_tries,
        version_id,
        load_json(params) or {},
        worker,
        started_at,
    )


_CLAIM = Statement(
    "claim",
    "UPDATE runs_taskinstance SET state = 'running', try_number = try_number + 1,"
    " started_at = %(now)s, finished_at = NULL, lease_expires_at = %(lease)s,"
    " worker = %(worker)s, next_retry_at = NULL, pgid = NULL"
    " WHERE id = %(id)s AND state = 'queued' AND try_number = %(try_number)s"
    " RETURNING run_id, task_id, try_number, max_tries,"
    " (SELECT dag_version_id FROM runs_dagrun WHERE runs_dagrun.id = run_id),"
    " (SELECT params FROM runs_dagrun WHERE runs_dagrun.id = run_id)",
)


def claim(instance_id: int, try_number: int, worker: str, lease_secs: int) -> Claim | None:
    """queued -> running for the message that carries `try_number`; None if another won."""
    now = timezone.now()
    lease = now + timezone.timedelta(seconds=lease_secs)
    with connection.cursor() as cursor:
        _CLAIM.execute(
            cursor,
            {
                "now": ts(now),
                "lease": ts(lease),
                "worker": worker,
                "id": instance_id,
                "try_number": try_number,
            },
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return claim_from_row(instance_id, (*row, worker, now))


def queue_retry(instance_id: int, try_number: int) -> bool:
    """up_for_retry -> queued, once its backoff has passed."""
    return bool(
        TaskInstance.objects.filter(
            id=instance_id,
            state=TaskState.UP_FOR_RETRY,
            try_number=try_number,
            next_retry_at__lte=timezone.now() + timezone.timedelta(seconds=1),
        ).update(state=TaskState.QUEUED, queued_at=timezone.now())
    )


_HAND_BACK = (
    "UPDATE runs_taskinstance SET state = %(queued)s, try_number = try_number - 1,"
    " queued_at = %(now)s, started_at = NULL, lease_expires_at = NULL, worker = ''"
    " WHERE id = %(id)s AND state = %(running)s AND try_number = %(try_number)s"
)


def hand_back(claim: Claim) -> bool:
    """running -> queued for an attempt that FlowForge's own shutdown stopped (CONTRACT
    section 5): the try it took is given back, so the next worker starts the same try.

    Returns False when the attempt was no longer this claim's (cancelled, given up).
    The caller publishes the instance's message again, with `claim.try_number - 1`.
    """
    check_task_transition(TaskState.RUNNING, TaskState.QUEUED)
    with connection.cursor() as cursor:
        cursor.execute(
            _HAND_BACK,
            {
                "queued": TaskState.QUEUED,
                "running": TaskState.RUNNING,
                "now": ts(timezone.now()),
                "id": claim.instance_id,
                "try_number": claim.try_number,
            },
        )
        return cursor.rowcount == 1


# Where an attempt that ran to its end leaves its instance.
FINISHED = frozenset({TaskState.SUCCESS, TaskState.UP_FOR_RETRY, TaskState.FAILED})


def check_finish(target: str) -> None:
    check_task_transition(TaskState.RUNNING, target)
    if target not in FINISHED:
        raise TransitionRefused(f"an attempt that ended cannot leave its task {target}")


def finish_attempt(
    instance_id: int, try_number: int, target: str, *, next_retry_at=None, **fields
) -> bool:
    """running -> success | up_for_retry | failed, for the attempt that holds the claim."""
    check_finish(target)
    # queued_at stays: with started_at it tells how long the attempt waited in the queue.
    return bool(
        TaskInstance.objects.filter(
            id=instance_id, state=TaskState.RUNNING, try_number=try_number
        ).update(
            state=target,
            finished_at=timezone.now(),
            lease_expires_at=None,
            next_retry_at=next_retry_at,
            **fields,
        )
    )


@dataclass(frozen=True)
class Latch:
    """A downstream instance's latch right after an upstream released it."""

    instance_id: int
    task_id: str
    state: str
    pending: int
    succeeded: int
    failed: int
    skipped: int


@dataclass(frozen=True)
class Finish:
    """What finishing an attempt did: nothing (`moved` false: it lost the race), or moved
    the instance, released its downstream instances and counted it on its run."""

    moved: bool
    latches: list[Latch]
    run_state: str | None  # the run's final state, when this finish ended the run


def _release_counts(target: str) -> tuple[int, int, int]:
    """(succeeded, failed, skipped): what an upstream in `target` adds to a latch."""
    if target == TaskState.SUCCESS:
        return 1, 0, 0
    if target in TaskState.FAILING:
        return 0, 1, 0
    return 0, 0, 1


LATCH_COLUMNS = (
    "id, task_id, state, pending_upstream, upstream_succeeded, upstream_failed, upstream_skipped"
)


def _release_set(queued: str) -> str:
    """The SET of a latch release, here and in the finish statement: `done` more upstream
    tasks are final (`succeeded`, `failed`, `skipped`); a row matching the SQL condition
    `queued` (an all_success task) goes pending -> queued once all of them succeeded."""
    ready = (
        f"{queued} AND state = 'pending' AND pending_upstream = %(done)s"
        " AND upstream_failed + %(failed)s = 0 AND upstream_skipped + %(skipped)s = 0"
    )
    return (
        "pending_upstream = pending_upstream - %(done)s,"
        " upstream_succeeded = upstream_succeeded + %(succeeded)s,"
        " upstream_failed = upstream_failed + %(failed)s,"
        " upstream_skipped = upstream_skipped + %(skipped)s,"
        f" state = CASE WHEN {ready} THEN 'queued' ELSE state END,"
        f" queued_at = CASE WHEN {ready} THEN %(now)s ELSE queued_at END"
    )


def _named(prefix: str, items: Sequence) -> tuple[str, dict]:
    """`(%(p0)s, %(p1)s, ...)` and its parameters: a list for SQL IN, on any backend."""
    names = {f"{prefix}{n}": item for n, item in enumerate(items)}
    return "(" + ", ".join(f"%({name})s" for name in names) + ")", names


# One statement on PostgreSQL, so no transaction is needed around it: the guarded move,
# the attempt's row, the release of the downstream latches (queueing those ready) and the
# run's countdown all happen, or, when the move loses its race, none of them.
_FINISH_SQL = f"""
WITH moved AS (
    UPDATE runs_taskinstance SET state = %(state)s, finished_at = %(now)s,
        lease_expires_at = NULL, next_retry_at = %(next_retry_at)s,
        exit_code = %(exit_code)s, error = %(error)s, output = %(output)s::jsonb
    WHERE id = %(id)s AND state = 'running' AND try_number = %(try_number)s
    RETURNING id
), attempt AS (
    INSERT INTO runs_taskattempt (task_instance_id, try_number, state, worker, host, pgid,
        started_at, finished_at, exit_code, stdout, stderr, error)
    SELECT id, %(try_number)s, %(state)s, %(worker)s, %(host)s, %(pgid)s::integer,
        %(started_at)s, %(now)s, %(exit_code)s::integer, %(stdout)s, %(stderr)s, %(error)s
    FROM moved
), released AS (
    UPDATE runs_taskinstance SET {_release_set("task_id = ANY(%(queue_ids)s)")}
    WHERE run_id = %(run_id)s AND task_id = ANY(%(downstream)s)
        AND cardinality(%(downstream)s::varchar[]) > 0 AND EXISTS (SELECT FROM moved)
    RETURNING {LATCH_COLUMNS}
), counted AS (
    UPDATE runs_dagrun SET {COUNTDOWN_SET}
    WHERE id = %(run_id)s AND state = 'running' AND %(final)s > 0 AND EXISTS (SELECT FROM moved)
    RETURNING state, tasks_unfinished
)
SELECT 'moved', id, NULL, NULL, NULL, NULL, NULL, NULL FROM moved
UNION ALL SELECT 'latch', id, task_id, state, pending_upstream, upstream_succeeded,
    upstream_failed, upstream_skipped FROM released
UNION ALL SELECT 'run', NULL, NULL, state, tasks_unfinished, NULL, NULL, NULL FROM counted
"""
_FINISH = Statement("finish", _FINISH_SQL)


def finish_task(
    claim: Claim,
    target: str,
    *,
    downstream: Sequence[str],
    queue_ids: Collection[str],
    stdout: str = "",
    stderr: str = "",
    next_retry_at=None,
    exit_code: int | None = None,
    error: str = "",
    output=None,
    pgid: int | None = None,
) -> Finish:
    """running -> success | up_for_retry | failed for the attempt that holds the claim,
    with everything that follows from it in the same atomic step:

    - the attempt's TaskAttempt row;
    - for a final `target`, the latches of the `downstream` instances counted down, and
      those in `queue_ids` (all_success tasks) queued once every upstream succeeded;
    - for a final `target`, the instance counted down on its run, which ends with it.

    The attempt row names the host the claim's worker runs on and `pgid`, the process
    group the attempt ran (None: it ran none).

    Downstream instances that another trigger rule now decides are left to the caller.
    """
    check_finish(target)
    now = timezone.now()
    final = target in TaskState.FINAL
    succeeded, failed, skipped = _release_counts(target)
    values = {
        "state": target,
        "now": now,
        "next_retry_at": next_retry_at,
        "exit_code": exit_code,
        "error": error,
        "output": output,
        "id": claim.instance_id,
        "try_number": claim.try_number,
        "run_id": uuid.UUID(claim.run_id),
        "downstream": list(downstream) if final else [],
        "queue_ids": [task_id for task_id in downstream if task_id in queue_ids],
        "done": 1,
        "succeeded": succeeded,
        "failed": failed,
        "skipped": skipped,
        "final": int(final),
        "failing": int(target in TaskState.FAILING),
        "worker": claim.worker,
        "host": worker_host(claim.worker),
        "pgid": pgid,
        "started_at": claim.started_at,
        "stdout": stdout,
        "stderr": stderr,
    }
    if connection.vendor != "postgresql":
        return _finish_task_stepwise(values)
    with connection.cursor() as cursor:
        _FINISH.execute(
            cursor, {**values, "output": None if output is None else json.dumps(output)}
        )
        rows = cursor.fetchall()
    latches = [Latch(*row[1:]) for row in rows if row[0] == "latch"]
    run_state = next((row[3] for row in rows if row[0] == "run" and row[4] == 0), None)
    return Finish(any(row[0] == "moved" for row in rows), latches, run_state)


def _finish_task_stepwise(values: dict) -> Finish:
    """finish_task where data-modifying CTEs are missing (SQLite): one step at a time,
    in one transaction."""

    def pick(*keys: str) -> dict:
        return {key: values[key] for key in keys}

    with transaction.atomic():
        moved = finish_attempt(
            values["id"],
            values["try_number"],
            values["state"],
            **pick("next_retry_at", "exit_code", "error", "output"),
        )
        if not moved:
            return Finish(False, [], None)
        TaskAttempt.objects.create(
            task_instance_id=values["id"],
            finished_at=values["now"],
            **pick("try_number", "state", "worker", "host", "pgid", "started_at"),
            **pick("stdout", "stderr"),
            **pick("exit_code", "error"),
        )
        latches = release_downstream(
            values["run_id"],
            values["downstream"],
            **pick("succeeded", "failed", "skipped", "queue_ids"),
        )
        run_state = count_finished_tasks(values["run_id"], values["final"], values["failing"])
    return Finish(True, latches, run_state)


def release_downstream(
    run_id,
    task_ids: Sequence[str],
    *,
    succeeded: int = 0,
    failed: int = 0,
    skipped: int = 0,
    queue_ids: Collection[str] = (),
) -> list[Latch]:
    """Count finished upstream tasks down on each named instance (one UPDATE ... RETURNING).

    An instance named in `queue_ids` (all_success tasks, the common case) whose upstream
    tasks have now all succeeded also goes pending -> queued in the same statement; such
    rows come back `queued` with nothing pending.
    """
    if not task_ids:
        return []
    downstream, params = _named("t", task_ids)
    queued = [task_id for task_id in task_ids if task_id in queue_ids]
    in_queued, queued_params = _named("q", queued)
    params |= queued_params | {
        "done": succeeded + failed + skipped,
        "succeeded": succeeded,
        "failed": failed,
        "skipped": skipped,
        "now": ts(timezone.now()),
        "run_id": run_key(run_id),
    }
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE runs_taskinstance SET {_release_set(f'task_id IN {in_queued}' if queued else '1 = 0')}"
            f" WHERE run_id = %(run_id)s AND task_id IN {downstream} RETURNING {LATCH_COLUMNS}",
            params,
        )
        return [Latch(*row) for row in cursor.fetchall()]


def leave_pending(instance_ids: list[int], target: str) -> list[int]:
    """pending -> queued | upstream_failed | skipped; returns the ids that moved."""
    check_task_transition(TaskState.PENDING, target)
    if not instance_ids:
        return []
    now = ts(timezone.now())
    final = target in TaskState.FINAL
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE runs_taskinstance SET state = %s, queued_at = %s, finished_at = %s"
            f" WHERE state = %s AND id IN ({placeholders(instance_ids)}) RETURNING id",
            [
                target,
                None if final else now,
                now if final else None,
                TaskState.PENDING,
                *instance_ids,
            ],
        )
        return [row[0] for row in cursor.fetchall()]


def clear_instance(instance_id: int, source: str, *, max_tries: int, latch: dict) -> bool:
    """failed | upstream_failed | skipped | cancelled -> pending, to run again.

    `latch` holds the recomputed pending_upstream and upstream_* counts; the attempt
    count goes on from where it was, with a fresh retry budget in `max_tries`.
    """
    check_task_transition(source, TaskState.PENDING)
    return bool(
        TaskInstance.objects.filter(id=instance_id, state=source).update(
            state=TaskState.PENDING,
            max_tries=max_tries,
            queued_at=None,
            started_at=None,
            finished_at=None,
            next_retry_at=None,
            lease_expires_at=None,
            exit_code=None,
            error="",
            **latch,
        )
    )
