"""The reconciler: a periodic pass that finishes what crashes, lost messages and dead
workers left undone (DESIGN.md, engine step 5).

One pass at a time: a PostgreSQL advisory lock (a second pass that finds it taken skips),
or on SQLite one IMMEDIATE transaction, which holds the database's write lock for the
whole pass. Every repair is a guarded transition in runs/states/, so a repair that races
a worker happens once or not at all; each is counted and logged. When nothing is wrong a
pass is a handful of indexed queries, whatever the number of runs and tasks.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from dags import schedules
from dags.compiled import compiled_version
from runs import states, telemetry
from runs.cascade import propagate
from runs.messages import TaskMessage, publish_on_commit
from runs.models import DagRun, TaskInstance
from runs.services import admit_queued_runs, republish
from runs.states import RunState, TaskState
from runs.trigger_rules import decide

from .dispatch import complete_attempt
from .executors import ExecutionResult
from .executors.process import kill_attempt_group
from .leases import fence_grace

log = logging.getLogger(__name__)

RECONCILE_TASK = "flowforge.reconcile"
# Not of the form "flowforge:<dag_id>" that DAG schedules use, so no DAG can take it.
SCHEDULE_NAME = "flowforge.reconcile"
WORKER_LOST = "worker lost"
# Rows handled per repair and pass: a backlog is worked off over several passes.
BATCH = 500
# Any constant works: advisory locks are per database, and nothing else here takes one.
LOCK_KEY = 0x466C6F77466F7267  # "FlowForg"


@dataclass
class Repairs:
    """What one pass repaired, by kind; `skipped` when another pass held the lock."""

    lost_attempts: int = 0
    overdue_retries: int = 0
    republished: int = 0
    released_pending: int = 0
    finished_runs: int = 0
    admitted_runs: int = 0
    skipped: bool = False

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self) if f.name != "skipped")

    def as_dict(self) -> dict:
        return asdict(self)


def reconcile() -> Repairs:
    """Run one pass of every repair, unless another pass is running right now."""
    with _exclusive() as acquired:
        if not acquired:
            log.info("reconciler: another pass is running; skipping this one")
            return Repairs(skipped=True)
        repairs = Repairs()
        now = timezone.now()
        for name, repair in _REPAIRS:
            try:
                setattr(repairs, name, repair(now))
                telemetry.repairs_made(name, getattr(repairs, name))
            except Exception:  # noqa: BLE001 - one failing repair must not stop the others
                log.exception("reconciler: %s failed; the next pass tries again", name)
    if repairs.total:
        log.warning("reconciler repaired %s", {k: v for k, v in repairs.as_dict().items() if v})
    return repairs


@contextmanager
def _exclusive() -> Iterator[bool]:
    if connection.vendor != "postgresql":
        # SQLite takes its write lock when the transaction begins (transaction_mode
        # IMMEDIATE in settings), so a second pass waits for this one, then finds
        # nothing left to repair.
        with transaction.atomic():
            yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
        acquired = cursor.fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired:
            _unlock()


def _unlock() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
    except DatabaseError:  # a lost connection took its session lock with it
        log.warning("reconciler: could not release the advisory lock", exc_info=True)


def fail_lost_attempts(now: datetime) -> int:
    """Running instances whose lease expired: their worker is gone. Their attempt ends
    failed with "worker lost", through the normal completion handler, so the task's
    retry policy decides what comes next.

    A retry must never overlap the attempt it replaces. An attempt fences itself (its
    process group dies with its worker process, and stops when its lease cannot be
    renewed), so it is called lost only once its lease expired and the time to kill a
    process group has passed too; and on the host it ran on, whatever is left of its
    process group is killed here first.
    """
    expired_before = now - fence_grace()
    expired = TaskInstance.objects.filter(
        state=TaskState.RUNNING, lease_expires_at__lt=expired_before
    )
    failed = 0
    for instance_id in _ids(expired):
        with transaction.atomic():
            taken = states.take_expired_lease(instance_id, expired_before)
            if taken is None:  # renewed or finished since the query
                continue
            claim, pgid = taken
            if pgid and states.worker_host(claim.worker) == socket.gethostname():
                kill_attempt_group(pgid, claim.run_id, claim.task_id, claim.try_number)
            complete_attempt(
                claim,
                ExecutionResult(succeeded=False, error=WORKER_LOST, pgid=pgid),
                compiled_version(claim.dag_version_id),
            )
            failed += 1
    return failed


def queue_overdue_retries(now: datetime) -> int:
    """up_for_retry instances whose backoff ended long ago: their delayed message was lost
    (e.g. with the worker that held it). They are queued and published again."""
    due_before = now - _requeue_after()
    overdue = TaskInstance.objects.filter(
        state=TaskState.UP_FOR_RETRY, next_retry_at__lt=due_before
    )
    return _requeue(_ids(overdue), lambda ids: states.requeue_overdue_retries(ids, due_before))


def republish_stale_queued(now: datetime) -> int:
    """Queued instances nobody claimed for a while: their message may be gone (broker
    restarted empty, publish failed). Sent again; a duplicate loses at the claim."""
    stale_before = now - _requeue_after()
    stale = TaskInstance.objects.filter(state=TaskState.QUEUED).filter(
        Q(queued_at__lt=stale_before) | Q(queued_at__isnull=True)
    )
    return _requeue(_ids(stale), lambda ids: states.requeue_stale_queued(ids, stale_before))


def release_stuck_pending(now: datetime) -> int:
    """Pending instances of running runs whose latch reached 0 but which never moved on:
    their trigger rule decides now, as the completion handler would have."""
    stuck = (
        TaskInstance.objects.filter(
            state=TaskState.PENDING, pending_upstream=0, run__state=RunState.RUNNING
        )
        .order_by()
        .values_list(
            "id",
            "task_id",
            "try_number",
            "run_id",
            "run__dag_version_id",
            "upstream_succeeded",
            "upstream_failed",
            "upstream_skipped",
        )
    )
    released = 0
    for pk, task_id, tries, run_id, version_id, succeeded, failed, skipped in stuck[:BATCH]:
        compiled = compiled_version(version_id)
        target = decide(compiled.tasks[task_id].trigger_rule, 0, succeeded, failed, skipped)
        latch = states.Latch(pk, task_id, TaskState.PENDING, 0, succeeded, failed, skipped)
        with transaction.atomic():
            if not states.leave_pending([pk], target.value, decided_on=[latch]):
                continue
            if target.value == TaskState.QUEUED:
                publish_on_commit([TaskMessage(pk, tries, compiled.tasks[task_id].queue)])
                telemetry.tasks_enqueued(compiled.dag_id, 1)
            else:
                propagate(str(run_id), compiled, {task_id: target.value})
            released += 1
    return released


def finish_drained_runs(now: datetime) -> int:
    """Running runs with no unfinished task left: they end success or failed."""
    drained = DagRun.objects.filter(state=RunState.RUNNING, tasks_unfinished=0).order_by()
    finished = 0
    for run_id, version_id in list(drained.values_list("id", "dag_version_id")[:BATCH]):
        if state := states.finish_drained_run(run_id):
            telemetry.run_finished(compiled_version(version_id).dag_id, state)
            finished += 1
    return finished


def admit_waiting_runs(now: datetime) -> int:
    """Queued runs of DAGs that have room under max_active_runs again are started."""
    dag_pks = (
        DagRun.objects.filter(state=RunState.QUEUED)
        .order_by()
        .values_list("dag_id", flat=True)
        .distinct()
    )
    return sum(admit_queued_runs(dag_pk) for dag_pk in list(dag_pks[:BATCH]))


# In this order: a lost attempt may queue a retry or release downstream tasks, and a run
# finished here makes room for a queued one.
_REPAIRS: list[tuple[str, Callable[[datetime], int]]] = [
    ("lost_attempts", fail_lost_attempts),
    ("overdue_retries", queue_overdue_retries),
    ("republished", republish_stale_queued),
    ("released_pending", release_stuck_pending),
    ("finished_runs", finish_drained_runs),
    ("admitted_runs", admit_waiting_runs),
]


def _requeue_after() -> timedelta:
    return timedelta(seconds=settings.FLOWFORGE_REQUEUE_AFTER_SECS)


def _ids(queryset) -> list:
    # Unordered: sorting by id would tempt the planner to walk the primary key past every
    # row, instead of the state index, to fill the LIMIT.
    return list(queryset.order_by().values_list("id", flat=True)[:BATCH])


def _requeue(ids: list[int], transition: Callable[[list[int]], list[states.Republish]]) -> int:
    """Apply a requeue transition to `ids` and publish what it moved, once it commits."""
    if not ids:
        return 0
    with transaction.atomic():
        moved = transition(ids)
        republish(moved)
    return len(moved)


def ensure_schedule() -> PeriodicTask:
    """The beat entry that runs the reconciler every FLOWFORGE_RECONCILE_SECS.

    The migration creates it; beat calls this when it starts, so the interval follows
    the setting of the beat that runs it and the entry comes back if it was deleted.
    """
    return schedules.ensure_interval_entry(
        SCHEDULE_NAME, RECONCILE_TASK, settings.FLOWFORGE_RECONCILE_SECS
    )
