"""Task-instance transitions: claim, finish (with the release of downstream latches),
hand back, leave pending, retry, cancel."""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from ..prepared import Statement
from . import slots
from .machine import RunState, TaskState, transition
from .rules import COUNTDOWN_STATES, RELEASE_STATES, countdown_set, release_set
from .sql import (
    any_of,
    execute,
    id_list,
    json_text,
    json_value,
    load_json,
    now,
    on_postgres,
    run_key,
    ts,
)


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


CLAIM = transition("claim", "task", [TaskState.QUEUED], [TaskState.RUNNING])
_CLAIM_MOVE = (
    "UPDATE runs_taskinstance SET state = %(target)s, try_number = try_number + 1,"
    " started_at = %(now)s, finished_at = NULL, lease_expires_at = %(lease)s,"
    " worker = %(worker)s, next_retry_at = NULL, pgid = NULL, waiting_slot = %(no)s,"
    " stopped_lease = NULL, live_output = ''"
    f" WHERE id = %(id)s AND {CLAIM.guard()} AND try_number = %(try_number)s"
    " AND (stopped_lease IS NULL OR stopped_lease < %(stops_over)s)"
    " RETURNING run_id, task_id, try_number, max_tries,"
    " (SELECT dag_version_id FROM runs_dagrun WHERE runs_dagrun.id = run_id) AS version,"
    " (SELECT params FROM runs_dagrun WHERE runs_dagrun.id = run_id) AS params, pool"
)
# One statement on PostgreSQL: the move and the slots it takes, or (a CHECK constraint
# refusing a slot) none of them.
_CLAIM = Statement(
    "claim",
    f"WITH claimed AS ({_CLAIM_MOVE}),"
    f" run_slot AS ({slots.TAKE_RUN_SLOT.format(run='(SELECT run_id FROM claimed)')}),"
    f" pool_slot AS ({slots.TAKE_POOL_SLOT.format(pool='(SELECT pool FROM claimed)')})"
    " SELECT run_id, task_id, try_number, max_tries, version, params FROM claimed",
)


def claim(
    instance_id: int,
    try_number: int,
    worker: str,
    lease_secs: int,
    stops_over_before: datetime | None = None,
) -> Claim | None:
    """queued -> running for the message that carries `try_number`, with a lease of
    `lease_secs` seconds, taking a slot of the run's max_active_tasks and of the task's
    pool (runs/states/slots.py); None if another message or worker won, or while an
    attempt stopped by a cancel, timeout or repair may still run (its `stopped_lease`
    not before `stops_over_before`, default now). Raises slots.NoSlot, changing nothing,
    when a slot is full."""
    started = timezone.now()
    params = {
        **CLAIM.params(),
        "target": TaskState.RUNNING,
        "now": ts(started),
        "lease": ts(started + timezone.timedelta(seconds=lease_secs)),
        "worker": worker,
        "id": instance_id,
        "try_number": try_number,
        "no": False,
        "stops_over": ts(stops_over_before or started),
    }
    try:
        row = _claim_on_postgres(params) if on_postgres() else _claim_stepwise(params)
    except IntegrityError as exc:
        if slots.is_no_slot(exc):
            raise slots.NoSlot(str(exc)) from None
        raise
    if row is None:
        return None
    return claim_from_row(instance_id, (*row[:6], worker, started))


def _claim_on_postgres(params: dict[str, Any]) -> tuple | None:
    with connection.cursor() as cursor:
        _CLAIM.execute(cursor, params)
        return cursor.fetchone()


def _claim_stepwise(params: dict[str, Any]) -> tuple | None:
    """The claim where data-modifying WITH is missing (SQLite): the same steps in one
    transaction."""
    with transaction.atomic():
        rows = execute(_CLAIM_MOVE, params)
        if not rows:
            return None
        run_id, pool = rows[0][0], rows[0][6]
        execute(slots.TAKE_RUN_SLOT.format(run="%(run_id)s"), {"run_id": run_id})
        execute(slots.TAKE_POOL_SLOT.format(pool="%(pool)s"), {"pool": pool})
    return rows[0]


QUEUE_RETRY = transition("queue_retry", "task", [TaskState.UP_FOR_RETRY], [TaskState.QUEUED])


def queue_retry(instance_id: int, try_number: int) -> bool:
    """up_for_retry -> queued, once its backoff has passed (1 s early at most: the delayed
    message may arrive a moment before the time the row holds)."""
    rows = execute(
        "UPDATE runs_taskinstance SET state = %(target)s, queued_at = %(now)s"
        f" WHERE id = %(id)s AND {QUEUE_RETRY.guard()} AND try_number = %(try_number)s"
        " AND next_retry_at <= %(due)s RETURNING id",
        {
            **QUEUE_RETRY.params(),
            "target": TaskState.QUEUED,
            "now": now(),
            "due": ts(timezone.now() + timezone.timedelta(seconds=1)),
            "id": instance_id,
            "try_number": try_number,
        },
    )
    return bool(rows)


HAND_BACK = transition("hand_back", "task", [TaskState.RUNNING], [TaskState.QUEUED])


def hand_back(claim: Claim) -> bool:
    """running -> queued for an attempt that FlowForge's own shutdown stopped (CONTRACT
    section 5): the try it took is given back, so the next worker starts the same try.

    Returns False when the attempt was no longer this claim's (cancelled, given up).
    The attempt's slots are given back with it (one transaction). The caller publishes
    the instance's message again, with `claim.try_number - 1`.
    """
    with transaction.atomic():
        rows = execute(
            "UPDATE runs_taskinstance SET state = %(target)s, try_number = try_number - 1,"
            " queued_at = %(now)s, started_at = NULL, lease_expires_at = NULL, worker = ''"
            f" WHERE id = %(id)s AND {HAND_BACK.guard()} AND try_number = %(try_number)s"
            " RETURNING pool",
            {
                **HAND_BACK.params(),
                "target": TaskState.QUEUED,
                "now": now(),
                "id": claim.instance_id,
                "try_number": claim.try_number,
            },
        )
        if rows:
            slots.give_back(claim.run_id, Counter(pool for (pool,) in rows), len(rows))
    return bool(rows)


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
    try_number: int = 0  # the try its next message carries: above 0 once it was cleared


@dataclass(frozen=True)
class Finish:
    """What finishing an attempt did: nothing (`moved` false: it lost the race), or moved
    the instance, released its downstream instances and counted it on its run."""

    moved: bool
    latches: list[Latch]
    run_state: str | None  # the run's final state, when this finish ended the run
    freed_run_slot: bool = False  # a slot of the run's max_active_tasks was given back
    freed_pool: str | None = None  # the pool a slot was given back to
    # Instances waiting for those slots, taken off the wait: the caller sends their
    # messages again.
    woken: list[slots.Republish] = dataclasses.field(default_factory=list)


LATCH_COLUMNS = (
    "id, task_id, state, pending_upstream, upstream_succeeded, upstream_failed,"
    " upstream_skipped, try_number"
)
# The release of latches, here and as a step of the finish: it moves pending -> queued.
RELEASE = transition("release", "task", [TaskState.PENDING], [TaskState.PENDING, TaskState.QUEUED])


def _release_sql(also: str = "") -> str:
    """Count released upstream tasks down on the latches of the `downstream` instances of
    run `run_id`, queueing those in `queue_ids` that are ready; `also` adds a condition."""
    return (
        f"UPDATE runs_taskinstance SET {release_set(any_of('task_id', 'queue_ids'))}"
        f" WHERE run_id = %(run_id)s AND {any_of('task_id', 'downstream')}{also}"
        f" RETURNING {LATCH_COLUMNS}"
    )


def release_downstream(
    run_id: Any,
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
    rows = execute(
        _release_sql(),
        {
            **RELEASE_STATES,
            "run_id": run_key(run_id),
            "downstream": id_list(task_ids),
            "queue_ids": id_list([task_id for task_id in task_ids if task_id in queue_ids]),
            "done": succeeded + failed + skipped,
            "succeeded": succeeded,
            "failed": failed,
            "skipped": skipped,
            "now": now(),
        },
    )
    return [Latch(*row) for row in rows]


def _release_counts(target: str) -> tuple[int, int, int]:
    """(succeeded, failed, skipped): what an upstream in `target` adds to a latch."""
    if target == TaskState.SUCCESS:
        return 1, 0, 0
    if target in TaskState.FAILING:
        return 0, 1, 0
    return 0, 0, 1


# Where an attempt that ran to its end leaves its instance.
FINISH = transition(
    "finish",
    "task",
    [TaskState.RUNNING],
    [TaskState.SUCCESS, TaskState.UP_FOR_RETRY, TaskState.FAILED],
)
# The countdown of a run, as a step of the finish (and in dag_runs.count_finished_tasks).
COUNT = transition(
    "countdown", "run", [RunState.RUNNING], [RunState.RUNNING, RunState.SUCCESS, RunState.FAILED]
)


@cache
def _finish_steps(vendor: str) -> tuple[tuple[str, str], ...]:
    """The finish, step by step, each after the first guarded on `moved`: the guarded
    move, the attempt's row, the release of the downstream latches (queueing those
    ready) and the run's countdown. `vendor` keys the cache: the SQL spells lists and
    JSON as the backend does."""
    after_move = " AND EXISTS (SELECT 1 FROM moved)"
    return (
        (
            "moved",
            "UPDATE runs_taskinstance SET state = %(target)s, finished_at = %(now)s,"
            " lease_expires_at = NULL, next_retry_at = %(next_retry_at)s,"
            f" exit_code = %(exit_code)s, error = %(error)s, output = {json_value('output')}"
            f" WHERE id = %(id)s AND {FINISH.guard()} AND try_number = %(try_number)s"
            " RETURNING id, pool",
        ),
        (
            "attempt",
            "INSERT INTO runs_taskattempt (task_instance_id, try_number, state, worker, host,"
            " pgid, started_at, finished_at, exit_code, stdout, stderr, error)"
            " SELECT id, %(try_number)s, %(target)s, %(worker)s, %(host)s,"
            " CAST(%(pgid)s AS integer), %(started_at)s, %(now)s,"
            " CAST(%(exit_code)s AS integer), %(stdout)s, %(stderr)s, %(error)s FROM moved",
        ),
        ("released", _release_sql(" AND %(final)s > 0" + after_move)),
        (
            "counted",
            f"UPDATE runs_dagrun SET {countdown_set()}"
            f" WHERE id = %(run_id)s AND {COUNT.guard()} AND %(final)s > 0{after_move}"
            " RETURNING state, tasks_unfinished",
        ),
        (
            "run_slot",
            slots.GIVE_RUN_SLOT.format(n="1", run="%(run_id)s") + after_move + " RETURNING waiting",
        ),
        (
            "pool_slot",
            slots.GIVE_POOL_SLOT.format(n="1", pool="(SELECT pool FROM moved)")
            + " RETURNING name, waiting",
        ),
    )


# PostgreSQL only (the steps above cannot name each other on SQLite, where the caller
# wakes them in the same transaction): the slots given back wake the oldest waiters.
@cache
def _finish_statement(vendor: str) -> Statement:
    """The finish as one statement (PostgreSQL: data-modifying WITH): every step
    happens, or, when the move loses its race, none of them. No transaction is needed
    around it."""
    steps = ", ".join(f"{name} AS ({sql})" for name, sql in _finish_steps(vendor))
    return Statement(
        "finish",
        f"WITH {steps}"
        " SELECT 'moved', id, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM moved"
        " UNION ALL SELECT 'latch', id, task_id, state, pending_upstream, upstream_succeeded,"
        " upstream_failed, upstream_skipped, try_number FROM released"
        " UNION ALL SELECT 'run', NULL, NULL, state, tasks_unfinished, NULL, NULL, NULL, NULL"
        " FROM counted"
        " UNION ALL SELECT 'run_slot', NULL, NULL, NULL, waiting, NULL, NULL, NULL, NULL"
        " FROM run_slot"
        " UNION ALL SELECT 'pool_slot', NULL, name, NULL, waiting, NULL, NULL, NULL, NULL"
        " FROM pool_slot",
    )


def finish_task(
    claim: Claim,
    target: str,
    *,
    downstream: Sequence[str],
    queue_ids: Collection[str],
    stdout: str = "",
    stderr: str = "",
    next_retry_at: datetime | None = None,
    exit_code: int | None = None,
    error: str = "",
    output: Any = None,
    pgid: int | None = None,
) -> Finish:
    """running -> success | up_for_retry | failed for the attempt that holds the claim,
    with everything that follows from it in the same atomic step:

    - the attempt's TaskAttempt row;
    - for a final `target`, the latches of the `downstream` instances counted down, and
      those in `queue_ids` (all_success tasks) queued once every upstream succeeded;
    - for a final `target`, the instance counted down on its run, which ends with it.

    The attempt row names the host the claim's worker runs on and `pgid`, the process
    group the attempt ran (None: it ran none). Raises TransitionRefused for another
    `target`. Downstream instances that another trigger rule now decides are left to
    the caller.
    """
    FINISH.check(target)
    final = target in TaskState.FINAL
    succeeded, failed, skipped = _release_counts(target)
    params = {
        **FINISH.params(),
        **COUNT.params(),
        **RELEASE_STATES,
        **COUNTDOWN_STATES,
        "target": target,
        "queued": TaskState.QUEUED,
        "no": False,
        "now": now(),
        "next_retry_at": ts(next_retry_at),
        "exit_code": exit_code,
        "error": error,
        "output": json_text(output),
        "id": claim.instance_id,
        "try_number": claim.try_number,
        "run_id": run_key(claim.run_id),
        "downstream": id_list(downstream),
        "queue_ids": id_list([task_id for task_id in downstream if task_id in queue_ids]),
        "done": 1,
        "succeeded": succeeded,
        "failed": failed,
        "skipped": skipped,
        "final": int(final),
        "failing": int(target in TaskState.FAILING),
        "worker": claim.worker,
        "host": worker_host(claim.worker),
        "pgid": pgid,
        "started_at": ts(claim.started_at),
        "stdout": stdout,
        "stderr": stderr,
    }
    if on_postgres():
        with connection.cursor() as cursor:
            _finish_statement(connection.vendor).execute(cursor, params)
            rows = cursor.fetchall()
        latches = [Latch(*row[1:]) for row in rows if row[0] == "latch"]
        run_state = next((row[3] for row in rows if row[0] == "run" and row[4] == 0), None)
        run_slot = next((row[4] for row in rows if row[0] == "run_slot"), None)
        pool_slot = next(((row[2], row[4]) for row in rows if row[0] == "pool_slot"), None)
        return Finish(
            any(row[0] == "moved" for row in rows),
            latches,
            run_state,
            run_slot is not None,
            pool_slot[0] if pool_slot else None,
            _wake(params["run_id"], run_slot, pool_slot),
        )
    return _finish_stepwise(params)


def _wake(
    run_id: Any, run_waiting: int | None, pool_slot: tuple[str, int] | None
) -> list[slots.Republish]:
    """The waiters the given-back slots wake, when the slots' waiting counters (read by
    the release, under its row lock) say there are any; none is looked for otherwise,
    which is the common case. A statement of its own, after the finish: its snapshot
    includes every waiter the counters counted (runs/states/slots.py)."""
    woken = slots.wake_waiting(run_id=run_id) if run_waiting else []
    if pool_slot and pool_slot[1]:
        woken += slots.wake_waiting(pool=pool_slot[0])
    return woken


def _finish_stepwise(params: dict[str, Any]) -> Finish:
    """finish_task where data-modifying WITH is missing (SQLite): the same steps one at
    a time, in one transaction, each later one reading `moved` from the first's row."""
    (_, move), *later = _finish_steps(connection.vendor)
    with transaction.atomic():
        moved = execute(move, params)
        if not moved:
            return Finish(False, [], None)
        step_params = {**params, "moved_pool": moved[0][1]}
        results = {
            name: execute(
                f"WITH moved(id, pool) AS (VALUES (%(id)s, %(moved_pool)s)) {sql}", step_params
            )
            for name, sql in later
        }
        run_slot = results["run_slot"][0][0] if results["run_slot"] else None
        pool_slot = (
            (results["pool_slot"][0][0], results["pool_slot"][0][1])
            if results["pool_slot"]
            else None
        )
        freed_pool = pool_slot[0] if pool_slot else None
        woken = _wake(params["run_id"], run_slot, pool_slot)
    latches = [Latch(*row) for row in results["released"]]
    counted = results["counted"]
    return Finish(
        True,
        latches,
        counted[0][0] if counted and counted[0][1] == 0 else None,
        bool(results["run_slot"]),
        freed_pool,
        woken,
    )


LEAVE_PENDING = transition(
    "leave_pending",
    "task",
    [TaskState.PENDING],
    [TaskState.QUEUED, TaskState.UPSTREAM_FAILED, TaskState.SKIPPED],
)


# A latch as one value, to guard a decision on the counts it was made from.
_LATCH_KEY = (
    "CAST(id AS TEXT) || ':' || CAST(pending_upstream AS TEXT) || ':'"
    " || CAST(upstream_succeeded AS TEXT) || ':' || CAST(upstream_failed AS TEXT) || ':'"
    " || CAST(upstream_skipped AS TEXT)"
)


def _latch_key(latch: Latch) -> str:
    return f"{latch.instance_id}:{latch.pending}:{latch.succeeded}:{latch.failed}:{latch.skipped}"


def leave_pending(
    instance_ids: Sequence[int], target: str, *, decided_on: Sequence[Latch] = ()
) -> list[int]:
    """pending -> queued | upstream_failed | skipped; returns the ids that moved.

    With `decided_on`, the latches a trigger rule decided `target` from, an instance
    moves only while its latch still holds those counts: a repair that set it afresh
    since (runs/repair.py) has decided it on its own. Raises TransitionRefused for
    another `target`."""
    LEAVE_PENDING.check(target)
    if not instance_ids:
        return []
    final = target in TaskState.FINAL
    latch_guard = f" AND {any_of(_LATCH_KEY, 'latches')}" if decided_on else ""
    rows = execute(
        "UPDATE runs_taskinstance SET state = %(target)s, queued_at = %(queued_at)s,"
        " finished_at = %(finished_at)s"
        f" WHERE {any_of('id', 'ids')} AND {LEAVE_PENDING.guard()}{latch_guard} RETURNING id",
        {
            **LEAVE_PENDING.params(),
            "target": target,
            "queued_at": None if final else now(),
            "finished_at": now() if final else None,
            "ids": id_list(instance_ids),
            "latches": id_list([_latch_key(latch) for latch in decided_on]),
        },
    )
    return [row[0] for row in rows]


# Instances a cancel stops: everything not yet final.
CANCEL = transition(
    "cancel",
    "task",
    [TaskState.PENDING, TaskState.QUEUED, TaskState.RUNNING, TaskState.UP_FOR_RETRY],
    [TaskState.CANCELLED],
)
CANCELLABLE = CANCEL.sources


@dataclass(frozen=True)
class Cancelled:
    """What a cancel of a run's instances did: how many it moved, and the pool slots
    their running attempts gave back (pool name -> count)."""

    instances: int
    freed_pools: Counter[str]


def lock_unfinished(run_id: Any) -> None:
    """Lock the run's unfinished instances (the caller's transaction) before its run row,
    the order a finish takes them in (instance, then run), so a cancel or a timeout
    racing a finish waits instead of deadlocking, and no claim slips between them."""
    if on_postgres():
        execute(
            "SELECT id FROM runs_taskinstance"
            f" WHERE run_id = %(run_id)s AND {CANCEL.guard()} ORDER BY id FOR UPDATE",
            {**CANCEL.params(), "run_id": run_key(run_id)},
        )


def cancel_instances(run_id: Any) -> Cancelled:
    """Every unfinished instance of the run -> cancelled, its running attempts' slots
    given back (the caller's transaction). Running attempts notice at their next lease
    renewal (it matches no row) and stop their process group.

    The instances are locked first and the running ones counted from the locked rows, so
    an attempt claimed or finished meanwhile is counted exactly when it holds its slots.
    """
    locked = execute(
        "SELECT id, state, pool, waiting_slot FROM runs_taskinstance"
        f" WHERE run_id = %(run_id)s AND {CANCEL.guard()}"
        + (" FOR UPDATE" if on_postgres() else ""),
        {**CANCEL.params(), "run_id": run_key(run_id)},
    )
    if not locked:
        return Cancelled(0, Counter())
    execute(
        "UPDATE runs_taskinstance SET state = %(target)s, finished_at = %(now)s,"
        " stopped_lease = CASE WHEN state = %(running)s THEN lease_expires_at"
        " ELSE stopped_lease END,"
        " lease_expires_at = NULL, next_retry_at = NULL, waiting_slot = %(no)s"
        f" WHERE {any_of('id', 'ids')}",
        {
            "target": TaskState.CANCELLED,
            "running": TaskState.RUNNING,
            "now": now(),
            "no": False,
            "ids": id_list([row[0] for row in locked]),
        },
    )
    running = [pool for _, state, pool, _ in locked if state == TaskState.RUNNING]
    pools = Counter(pool for pool in running if pool)
    slots.give_back(run_id, pools, len(running))
    slots.forget_waiting(run_id, [pool for _, _, pool, waiting in locked if waiting])
    return Cancelled(len(locked), pools)
