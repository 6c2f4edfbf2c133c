"""Transitions made by hand (CONTRACT section 9): stop an attempt, clear a task back to
pending, mark a task success or failed, and set the latches of the tasks downstream.

A repair first locks every instance of its run (`lock_run_instances`), in the order a
finish takes them, and decides from what it found. Each statement is then guarded on the
(state, try number) found, so that on a backend without row locks (SQLite) a worker or
another repair that got there first makes the statement match no row: the caller learns
it lost and rolls its transaction back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import slots
from .machine import TaskState, TransitionRefused, transition
from .sql import execute, now, on_postgres, run_key


@dataclass(frozen=True)
class Found:
    """A task instance as a repair found it, with its row locked."""

    instance_id: int
    task_id: str
    state: str
    try_number: int
    pool: str
    waiting_slot: bool

    @property
    def final(self) -> bool:
        return self.state in TaskState.FINAL


def lock_run_instances(run_id: Any) -> dict[str, Found]:
    """Every instance of the run by task id, locked for the caller's transaction (on
    PostgreSQL) in id order, the order cancels and timeouts lock them in."""
    rows = execute(
        "SELECT id, task_id, state, try_number, pool, waiting_slot FROM runs_taskinstance"
        " WHERE run_id = %(run_id)s ORDER BY id" + (" FOR UPDATE" if on_postgres() else ""),
        {"run_id": run_key(run_id)},
    )
    return {row[1]: Found(row[0], row[1], row[2], row[3], row[4], bool(row[5])) for row in rows}


STOP = transition(
    "stop_attempt",
    "task",
    [TaskState.QUEUED, TaskState.RUNNING, TaskState.UP_FOR_RETRY],
    [TaskState.CANCELLED],
)


def stop_attempt(run_id: Any, found: Found) -> bool:
    """queued | running | up_for_retry -> cancelled, guarded on the state and try number
    found; a running attempt's slots are given back, a waiting one's wait forgotten (the
    caller's transaction). The attempt's worker notices at its next lease renewal (it
    matches no row), stops its process group and records the attempt as cancelled; until
    then the task's next attempt waits (`stopped_lease`, end_stop).

    Returns False when the row was no longer as found. Raises TransitionRefused when
    `found.state` is not one of STOP's sources.
    """
    if found.state not in STOP.sources:
        raise TransitionRefused(f"stop_attempt: a task cannot go from {found.state} to cancelled")
    # A running attempt's lease is kept as the stop's: until it is over, or the attempt
    # has ended, no new attempt of the task is claimed (instances.claim).
    stopped_lease = "lease_expires_at" if found.state == TaskState.RUNNING else "stopped_lease"
    rows = execute(
        "UPDATE runs_taskinstance SET state = %(target)s, finished_at = %(now)s,"
        f" stopped_lease = {stopped_lease}, lease_expires_at = NULL, next_retry_at = NULL,"
        " waiting_slot = %(no)s"
        " WHERE id = %(id)s AND state = %(source)s AND try_number = %(try_number)s"
        " RETURNING id",
        {
            "target": TaskState.CANCELLED,
            "now": now(),
            "no": False,
            "id": found.instance_id,
            "source": found.state,
            "try_number": found.try_number,
        },
    )
    if not rows:
        return False
    if found.state == TaskState.RUNNING:
        slots.give_back(run_id, Counter({found.pool: 1} if found.pool else {}), 1)
    if found.waiting_slot:
        slots.forget_waiting(run_id, [found.pool])
    return True


CLEAR = transition(
    "clear",
    "task",
    sorted(TaskState.FINAL | {TaskState.PENDING}),
    [TaskState.PENDING],
)


def clear_instance(
    instance_id: int, source: str, try_number: int, *, max_tries: int, latch: Mapping[str, int]
) -> bool:
    """A final (or pending) instance -> pending, to run again, guarded on `source` and
    `try_number`, the state and try its caller found.

    `latch` holds the recomputed pending_upstream and upstream_* counts; the try number
    goes on from where it was, with a fresh budget of tries in `max_tries`. Raises
    TransitionRefused for a `source` that is not final or pending.
    """
    if source not in CLEAR.sources:
        raise TransitionRefused(f"clear: a task cannot go from {source} to pending")
    rows = execute(
        "UPDATE runs_taskinstance SET state = %(target)s, max_tries = %(max_tries)s,"
        " queued_at = NULL, started_at = NULL, finished_at = NULL, next_retry_at = NULL,"
        " lease_expires_at = NULL, exit_code = NULL, error = '', waiting_slot = %(no)s,"
        " pending_upstream = %(pending_upstream)s,"
        " upstream_succeeded = %(upstream_succeeded)s,"
        " upstream_failed = %(upstream_failed)s, upstream_skipped = %(upstream_skipped)s"
        " WHERE id = %(id)s AND state = %(source)s AND try_number = %(try_number)s"
        " RETURNING id",
        {
            "target": TaskState.PENDING,
            "source": source,
            "try_number": try_number,
            "max_tries": max_tries,
            "no": False,
            "id": instance_id,
            **latch,
        },
    )
    return bool(rows)


MARK = transition(
    "mark",
    "task",
    sorted(TaskState.FINAL | {TaskState.PENDING}),
    [TaskState.SUCCESS, TaskState.FAILED],
)


def mark_instance(instance_id: int, source: str, try_number: int, target: str, note: str) -> bool:
    """A pending or final instance -> success | failed by hand, guarded on `source` and
    `try_number`, the state and try its caller found; `note` (who marked it) becomes its
    error when it is marked failed. A finished instance keeps its finish time, so its
    duration stays the time it ran. Raises TransitionRefused for another `source` or
    `target`: an unfinished attempt is stopped first (stop_attempt)."""
    MARK.check(target)
    if source not in MARK.sources:
        raise TransitionRefused(f"mark: a task cannot go from {source} to {target}")
    rows = execute(
        "UPDATE runs_taskinstance SET state = %(target)s,"
        " finished_at = COALESCE(finished_at, %(now)s), lease_expires_at = NULL,"
        " next_retry_at = NULL, exit_code = NULL, error = %(error)s"
        " WHERE id = %(id)s AND state = %(source)s AND try_number = %(try_number)s"
        " RETURNING id",
        {
            "target": target,
            "now": now(),
            "error": note if target == TaskState.FAILED else "",
            "id": instance_id,
            "source": source,
            "try_number": try_number,
        },
    )
    return bool(rows)


@dataclass
class LatchCounts:
    """A latch's counters: how many upstream tasks are unfinished, and how the others
    ended (upstream_failed counts as failed; cancelled as skipped)."""

    pending: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0

    @classmethod
    def of(cls, upstream_states: Iterable[str]) -> LatchCounts:
        """The latch of a task whose upstream tasks are in these states."""
        counts = cls()
        for state in upstream_states:
            if state == TaskState.SUCCESS:
                counts.succeeded += 1
            elif state in TaskState.FAILING:
                counts.failed += 1
            elif state in TaskState.FINAL:
                counts.skipped += 1
            else:
                counts.pending += 1
        return counts

    def columns(self) -> dict[str, int]:
        """The counters by column name (runs_taskinstance)."""
        return {
            "pending_upstream": self.pending,
            "upstream_succeeded": self.succeeded,
            "upstream_failed": self.failed,
            "upstream_skipped": self.skipped,
        }


def set_latches(run_id: Any, latches: Mapping[str, LatchCounts]) -> None:
    """Set the latches of those instances (task id -> counts), leaving their states
    alone: the tasks downstream of a task a repair changed, which it does not reset.
    The caller holds every instance of the run locked (lock_run_instances), so no release
    can come between its reading of the upstream states and this write; the latch is set
    from those states rather than shifted, so it heals what a timeout or a cancel left
    unreleased."""
    for task_id, counts in latches.items():
        execute(
            "UPDATE runs_taskinstance SET pending_upstream = %(pending_upstream)s,"
            " upstream_succeeded = %(upstream_succeeded)s,"
            " upstream_failed = %(upstream_failed)s, upstream_skipped = %(upstream_skipped)s"
            " WHERE run_id = %(run_id)s AND task_id = %(task_id)s",
            {**counts.columns(), "run_id": run_key(run_id), "task_id": task_id},
        )
