"""Slots: a run's `max_active_tasks` (runs.RunSlots) and pools (dags.Pool), CONTRACT
section 7.

A running attempt holds one slot of its run's limit (when it has one) and one of its
pool (when it names one). The claim takes them in the same statement that moves the
instance to running; a CHECK constraint (running <= limit) makes a claim that would
exceed either fail as a whole, so no slot is ever taken by a read-then-write. Every way
out of running gives them back: the finish (success, retry, failure, timeout, a lost
worker found by the reconciler), a hand-back at shutdown, a cancel.

An instance whose claim found no slot stays queued, marked `waiting_slot`, and its message
is dropped; the release that frees a slot wakes the oldest waiting instance by sending
its message again. To lose no wake-up, the claimant marks itself waiting and then tries
once more: a release either committed before that second try (which then finds the
slot) or comes after the mark (and sees it).
"""

from __future__ import annotations

from collections import Counter
from functools import cache
from typing import Any

from django.db import IntegrityError, connection, transaction

from ..prepared import Statement
from .machine import TaskState
from .requeues import Republish
from .sql import execute, now, on_postgres, run_key


class NoSlot(Exception):
    """The claim would exceed the run's max_active_tasks or its pool's slots."""


def is_no_slot(exc: IntegrityError) -> bool:
    """Whether an IntegrityError is a slot's CHECK constraint refusing a claim."""
    text = str(exc)
    return (
        "run_within_max_active_tasks" in text
        or "pool_within_slots" in text
        or (
            "CHECK constraint failed" in text  # SQLite names no constraint
        )
    )


# Fragments of the claim and the finish, keyed on the instance's run and pool: each
# matches no row when the run has no limit or the instance no pool.
TAKE_RUN_SLOT = "UPDATE runs_runslots SET running = running + 1 WHERE run_id = {run}"
TAKE_POOL_SLOT = "UPDATE dags_pool SET running = running + 1 WHERE name = {pool}"
GIVE_RUN_SLOT = "UPDATE runs_runslots SET running = running - {n} WHERE run_id = {run}"
GIVE_POOL_SLOT = "UPDATE dags_pool SET running = running - {n} WHERE name = {pool}"


def give_back(run_id: Any, pools: Counter[str], running: int) -> None:
    """Give back the slots of `running` attempts of one run that left running outside
    the finish, `pools` counting them by pool (the caller's transaction)."""
    if running:
        execute(
            GIVE_RUN_SLOT.format(n="%(n)s", run="%(run_id)s"),
            {"n": running, "run_id": run_key(run_id)},
        )
    for pool, count in pools.items():
        if pool:
            execute(GIVE_POOL_SLOT.format(n="%(n)s", pool="%(pool)s"), {"n": count, "pool": pool})


COUNT_WAITING = (
    ("UPDATE runs_runslots SET waiting = waiting + %(n)s WHERE run_id = %(run_id)s"),
    ("UPDATE dags_pool SET waiting = waiting + %(n)s WHERE name = %(pool)s"),
)
UNCOUNT_WAITING = (
    "UPDATE runs_runslots SET waiting = GREATEST(waiting - %(n)s, 0) WHERE run_id = %(run_id)s",
    "UPDATE dags_pool SET waiting = GREATEST(waiting - %(n)s, 0) WHERE name = %(pool)s",
)


def _count_waiting(run_id: Any, pools: Counter[str], waiters: int, *, up: bool) -> None:
    """Count `waiters` of a run (by pool in `pools`) onto (or off) the waiting counters
    that tell a finish whether to look for someone to wake."""
    run_sql, pool_sql = COUNT_WAITING if up else UNCOUNT_WAITING
    if not up and not on_postgres():  # SQLite spells GREATEST as MAX
        run_sql, pool_sql = (sql.replace("GREATEST", "MAX") for sql in (run_sql, pool_sql))
    if waiters:
        execute(run_sql, {"n": waiters, "run_id": run_key(run_id)})
    for pool, count in pools.items():
        if pool:
            execute(pool_sql, {"n": count, "pool": pool})


def wait_for_slot(instance_id: int, try_number: int) -> bool:
    """Mark a queued instance as waiting for a slot, counted on its run's and its pool's
    waiting counters (one transaction); False when it is no longer queued at that try
    (another message claimed it, or it was cancelled).

    The counters are what keeps a wake-up from being lost: a finish reads them through
    the UPDATE that gives its slot back, which sees the latest row under its lock. Either
    this count committed first (the finish sees it and wakes), or the finish holds the
    row and this count waits for it to commit (the claim tried next finds the slot)."""
    with transaction.atomic():
        rows = execute(
            "SELECT run_id, pool, waiting_slot FROM runs_taskinstance"
            " WHERE id = %(id)s AND state = %(queued)s AND try_number = %(try_number)s"
            + (" FOR UPDATE" if on_postgres() else ""),
            {"id": instance_id, "queued": TaskState.QUEUED, "try_number": try_number},
        )
        if not rows:
            return False
        run_id, pool, waiting = rows[0]
        if not waiting:
            execute(
                "UPDATE runs_taskinstance SET waiting_slot = %(yes)s WHERE id = %(id)s",
                {"yes": True, "id": instance_id},
            )
            _count_waiting(run_id, Counter([pool]), 1, up=True)
    return True


def forget_waiting(run_id: Any, waiting_pools: list[str]) -> None:
    """Instances of a run that stop waiting other than by a wake-up (cancel, timeout):
    off the counters. `waiting_pools` holds each one's pool ("" for none)."""
    _count_waiting(run_id, Counter(waiting_pools), len(waiting_pools), up=False)


@cache
def _wake_statement(vendor: str, by: str) -> Statement:
    """The wake-up, by run or by pool, prepared once per PostgreSQL session: it follows
    every finish that gave a slot back, so it should not be planned each time."""
    skip_locked = " FOR UPDATE SKIP LOCKED" if vendor == "postgresql" else ""
    return Statement(
        f"wake_by_{by}",
        "UPDATE runs_taskinstance SET waiting_slot = %(no)s, queued_at = %(now)s"
        " WHERE id IN (SELECT id FROM runs_taskinstance"
        f"   WHERE {by} = %(key)s AND waiting_slot AND state = %(queued)s"
        f"   ORDER BY queued_at LIMIT %(count)s{skip_locked})"
        " RETURNING id, try_number, task_id,"
        " (SELECT dag_version_id FROM runs_dagrun WHERE runs_dagrun.id = run_id)",
    )


def wake_waiting(*, run_id: Any = None, pool: str | None = None, count: int = 1) -> list[Republish]:
    """Take the `count` oldest instances waiting for a slot of the run `run_id` or of the
    pool `pool` off the wait; the caller sends their messages again."""
    if (run_id is None) == (pool is None):
        raise ValueError("wake the waiters of a run or of a pool")
    by, key = ("run_id", run_key(run_id)) if run_id is not None else ("pool", pool)
    params = {"no": False, "now": now(), "queued": TaskState.QUEUED, "count": count, "key": key}
    with transaction.atomic():
        with connection.cursor() as cursor:
            _wake_statement(connection.vendor, by).execute(cursor, params)
            woken = [Republish(*row) for row in cursor.fetchall()]
        if woken:
            # Off the counter of the slot they were woken for; an instance waiting on
            # both a run and a pool stays counted on the other, which only costs a look.
            if run_id is not None:
                _count_waiting(run_id, Counter(), len(woken), up=False)
            elif pool:
                _count_waiting(None, Counter({pool: len(woken)}), 0, up=False)
    return woken
