"""Transitions that send the messages of queued instances again: the reconciler's, for
messages a crash lost (workflows/reconciler.py), and a stopped attempt's, for the message
a repair held back until it ended.

Each finds work that a crash, a lost message or a dead worker left undone; each is
guarded so that a repair racing a worker (or a second reconciler) happens once or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .machine import TaskState, transition
from .sql import any_of, execute, id_list, now, ts


@dataclass(frozen=True)
class Republish:
    """A queued instance whose message must be sent again."""

    instance_id: int
    try_number: int
    task_id: str
    dag_version_id: int


def _republish(sql: str, params: dict[str, Any]) -> list[Republish]:
    rows = execute(
        sql + " RETURNING id, try_number, task_id,"
        " (SELECT dag_version_id FROM runs_dagrun WHERE runs_dagrun.id = run_id)",
        params,
    )
    return [Republish(*row) for row in rows]


# Not a move: the instance stays queued with a new stamp.
REPUBLISH = transition("republish", "task", [TaskState.QUEUED], [TaskState.QUEUED])


def requeue_stale_queued(instance_ids: Sequence[int], stale_before: datetime) -> list[Republish]:
    """Stamp queued instances whose message is older than `stale_before` as queued now.

    The caller republishes what this returns; the new stamp keeps the next pass from
    republishing them again before another full interval has passed.
    """
    if not instance_ids:
        return []
    return _republish(
        "UPDATE runs_taskinstance SET queued_at = %(now)s"
        f" WHERE {any_of('id', 'ids')} AND {REPUBLISH.guard()}"
        " AND (queued_at IS NULL OR queued_at < %(stale_before)s)",
        {
            **REPUBLISH.params(),
            "now": now(),
            "ids": id_list(instance_ids),
            "stale_before": ts(stale_before),
        },
    )


# Not a move either: a stopped attempt's instance, queued again, gets its message.
AFTER_STOP = transition("requeue_after_stop", "task", [TaskState.QUEUED], [TaskState.QUEUED])


def requeue_after_stop(instance_id: int, try_number: int) -> list[Republish]:
    """The instance of an attempt that a repair stopped, queued again by it while the
    attempt still ran: its message was held back so that the two never overlap (runs/
    repair.py), and is sent now that the stopped attempt (at `try_number`) has ended.
    Stamps it queued now; the caller republishes what this returns (nothing when the
    instance has moved on: claimed, cancelled, finished)."""
    return _republish(
        "UPDATE runs_taskinstance SET queued_at = %(now)s"
        f" WHERE id = %(id)s AND {AFTER_STOP.guard()} AND try_number = %(try_number)s",
        {**AFTER_STOP.params(), "now": now(), "id": instance_id, "try_number": try_number},
    )


REQUEUE_RETRY = transition(
    "requeue_overdue_retry", "task", [TaskState.UP_FOR_RETRY], [TaskState.QUEUED]
)


def requeue_overdue_retries(instance_ids: Sequence[int], due_before: datetime) -> list[Republish]:
    """up_for_retry -> queued for retries due before `due_before` whose message never came."""
    if not instance_ids:
        return []
    return _republish(
        "UPDATE runs_taskinstance SET state = %(target)s, queued_at = %(now)s"
        f" WHERE {any_of('id', 'ids')} AND {REQUEUE_RETRY.guard()}"
        " AND next_retry_at < %(due_before)s",
        {
            **REQUEUE_RETRY.params(),
            "target": TaskState.QUEUED,
            "now": now(),
            "ids": id_list(instance_ids),
            "due_before": ts(due_before),
        },
    )
