"""Transitions that send the messages of queued instances again: the reconciler's, for
messages a crash lost (workflows/reconciler.py), and a stopped attempt's end, for the
messages refused while it might still run.

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


def end_stop(instance_id: int, try_number: int) -> list[Republish]:
    """The attempt at `try_number` that a cancel, timeout or repair stopped has ended:
    its task's next attempt may be claimed now. Returns the instance when it is queued,
    for the caller to send its message again (claims refused meanwhile dropped theirs).
    Not a move: the state stays as it is."""
    rows = execute(
        "UPDATE runs_taskinstance SET stopped_lease = NULL WHERE id = %(id)s"
        " AND try_number = %(try_number)s AND stopped_lease IS NOT NULL"
        " RETURNING id, try_number, task_id,"
        " (SELECT dag_version_id FROM runs_dagrun WHERE runs_dagrun.id = run_id), state",
        {"id": instance_id, "try_number": try_number},
    )
    return [Republish(*row[:4]) for row in rows if row[4] == TaskState.QUEUED]


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
