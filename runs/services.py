"""Triggering runs and admitting queued ones: what the API, admin, CLI and beat call."""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from dags import boundary
from dags import params as dag_params
from dags.compiled import compiled_version
from dags.models import Dag

from . import states, telemetry
from .messages import TaskMessage, publish_on_commit
from .models import DagRun, TaskInstance
from .states import RunState, TaskState


class TriggerError(ValueError):
    """A run cannot be created; the message says why."""


class ParamsRefused(TriggerError):
    """The trigger's params do not fit the DAG's (CONTRACT section 8): `problems` maps
    each bad param to what is wrong with it."""

    def __init__(self, error: dag_params.ParamsError) -> None:
        super().__init__(str(error))
        self.problems = error.problems


def trigger_run(
    dag: Dag | str,
    *,
    params: dict | None = None,
    triggered_by: str = "api",
    logical_date: datetime | None = None,
    idempotency_key: str | None = None,
) -> DagRun:
    """Create a run with all its task instances and dispatch its root tasks on commit.

    Raises TriggerError when the DAG cannot run or a param cannot be stored, and
    ParamsRefused (a TriggerError) when a param is unknown, invalid for its typed param
    or required and missing, creating nothing.
    """
    if problems := boundary.unstorable(params or {}, "params"):
        raise TriggerError("; ".join(boundary.describe(problems)))
    with transaction.atomic():
        dag = runnable_dag(dag, lock=True)
        compiled = compiled_version(dag.current_version_id)
        try:
            run_params = dag_params.resolve(compiled.spec.params, params or {})
        except dag_params.ParamsError as exc:
            raise ParamsRefused(exc) from None
        run = states.create_run(
            dag_pk=dag.pk,
            version_id=compiled.version_id,
            triggered_by=triggered_by,
            logical_date=logical_date or timezone.now(),
            params=run_params,
            idempotency_key=idempotency_key,
            latches={
                task_id: (1 + task.retries, len(task.depends_on), task.pool or "")
                for task_id, task in compiled.tasks.items()
            },
            max_active_tasks=compiled.spec.max_active_tasks,
        )
        if _has_room(dag, compiled.spec.max_active_runs):
            _start(run)
    return run


def trigger_once(dag: Dag | str, idempotency_key: str | None, **kwargs) -> tuple[DagRun, bool]:
    """trigger_run, except that a repeated idempotency key returns the first run.

    The unique key decides, so two concurrent repeats cannot both create a run.
    Returns the run and whether this call created it.
    """
    if idempotency_key:
        existing = DagRun.objects.filter(idempotency_key=idempotency_key).first()
        if existing:
            return existing, False
    try:
        with transaction.atomic():
            return trigger_run(dag, idempotency_key=idempotency_key or None, **kwargs), True
    except IntegrityError:
        if not idempotency_key:
            raise
        return DagRun.objects.get(idempotency_key=idempotency_key), False


def trigger_tick(
    dag: Dag | str, logical_date: datetime, *, triggered_by: str = "schedule"
) -> DagRun | None:
    """Trigger the run of one cron tick (by the scheduler or a backfill); None when that
    tick already has its run (the unique DAG and logical date decide)."""
    try:
        with transaction.atomic():
            return trigger_run(dag, triggered_by=triggered_by, logical_date=logical_date)
    except IntegrityError:
        return None


def admit_queued_runs(dag_pk: int) -> int:
    """Start the oldest queued runs of a DAG while it has room under max_active_runs."""
    started = 0
    with transaction.atomic():
        dag = Dag.objects.select_for_update().get(pk=dag_pk)
        limit = compiled_version(dag.current_version_id).spec.max_active_runs
        for run in DagRun.objects.filter(dag=dag, state=RunState.QUEUED).order_by("created_at"):
            if not _has_room(dag, limit):
                break
            _start(run)
            started += 1
    return started


def runnable_dag(dag_or_id: Dag | str, *, lock: bool = False) -> Dag:
    """The DAG, fresh from the database (with `lock`, its row locked for the rest of the
    transaction); TriggerError when it is unknown, deactivated or has no version."""
    dag_id = dag_or_id if isinstance(dag_or_id, str) else dag_or_id.dag_id
    rows = Dag.objects.select_for_update() if lock else Dag.objects
    try:
        dag = rows.get(dag_id=dag_id)
    except Dag.DoesNotExist:
        raise TriggerError(f"no DAG with id '{dag_id}'") from None
    if not dag.is_active:
        raise TriggerError(f"DAG '{dag_id}' is deactivated; resubmit it to use it again")
    if dag.current_version_id is None:
        raise TriggerError(f"DAG '{dag_id}' has no version")
    return dag


def _has_room(dag: Dag, max_active_runs: int) -> bool:
    # The Dag row is locked by the caller, so two triggers cannot both take the last slot.
    # Counting at most `max_active_runs` rows keeps this cheap however many runs are active.
    running = DagRun.objects.filter(dag=dag, state=RunState.RUNNING)[:max_active_runs]
    return running.count() < max_active_runs


def _start(run: DagRun) -> None:
    """queued -> running, and its root task instances pending -> queued, published on commit."""
    compiled = compiled_version(run.dag_version_id)
    if started_at := states.start_run(run.id, compiled.spec.run_timeout_secs):
        run.state, run.started_at = RunState.RUNNING, started_at
        telemetry.run_started(compiled.dag_id)
    roots = list(
        TaskInstance.objects.filter(
            run=run, pending_upstream=0, state=TaskState.PENDING
        ).values_list("id", "task_id")
    )
    moved = set(states.leave_pending([pk for pk, _ in roots], TaskState.QUEUED))
    publish_on_commit(
        TaskMessage(pk, 0, compiled.tasks[task_id].queue) for pk, task_id in roots if pk in moved
    )
    telemetry.tasks_enqueued(compiled.dag_id, len(moved))


class RunFinished(ValueError):
    """The run already ended; the message says how."""


def cancel_run(run: DagRun) -> DagRun:
    """Cancel a run: pending and queued tasks are cancelled, running ones stopped; the
    pool slots they held wake tasks waiting for them."""
    with transaction.atomic():
        cancelled = states.cancel_run(run.id)
        if cancelled is None:
            run.refresh_from_db()
            raise RunFinished(f"run {run.id} already finished ({run.state}); nothing to cancel")
        telemetry.run_finished(compiled_version(run.dag_version_id).dag_id, RunState.CANCELLED)
        for pool, freed in cancelled.freed_pools.items():
            republish(states.wake_waiting(pool=pool, count=freed))
    run.refresh_from_db()
    transaction.on_commit(lambda: admit_queued_runs(run.dag_id))
    return run


def republish(rows: list[states.Republish]) -> None:
    """Send the messages of queued instances again, once the caller's transaction commits."""
    publish_on_commit(
        TaskMessage(
            row.instance_id,
            row.try_number,
            compiled_version(row.dag_version_id).tasks[row.task_id].queue,
        )
        for row in rows
    )
