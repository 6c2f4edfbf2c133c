"""Triggering runs and admitting queued ones: what the API, admin, CLI and beat call."""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from dags.compiled import compiled_version
from dags.models import Dag

from . import states
from .messages import TaskMessage, publish_on_commit
from .models import DagRun, TaskInstance
from .states import RunState, TaskState


class TriggerError(ValueError):
    """A run cannot be created; the message says why."""


def trigger_run(
    dag: Dag | str,
    *,
    params: dict | None = None,
    triggered_by: str = "api",
    logical_date: datetime | None = None,
) -> DagRun:
    """Create a run with all its task instances and dispatch its root tasks on commit."""
    with transaction.atomic():
        dag = _locked_dag(dag)
        compiled = compiled_version(dag.current_version_id)
        run = DagRun.objects.create(
            dag=dag,
            dag_version_id=compiled.version_id,
            triggered_by=triggered_by,
            logical_date=logical_date or timezone.now(),
            params={**compiled.spec["params"], **(params or {})},
            tasks_unfinished=len(compiled.tasks),
        )
        TaskInstance.objects.bulk_create(
            TaskInstance(
                run=run,
                task_id=task_id,
                max_tries=1 + task["retries"],
                pending_upstream=len(task["depends_on"]),
            )
            for task_id, task in compiled.tasks.items()
        )
        if _has_room(dag, compiled.spec["max_active_runs"]):
            _start(run)
    return run


def trigger_scheduled(dag: Dag | str, logical_date: datetime) -> DagRun | None:
    """Trigger the run of one cron tick; None when that tick already has its run."""
    try:
        with transaction.atomic():
            return trigger_run(dag, triggered_by="schedule", logical_date=logical_date)
    except IntegrityError:
        return None


def admit_queued_runs(dag_pk: int) -> int:
    """Start the oldest queued runs of a DAG while it has room under max_active_runs."""
    started = 0
    with transaction.atomic():
        dag = Dag.objects.select_for_update().get(pk=dag_pk)
        limit = compiled_version(dag.current_version_id).spec["max_active_runs"]
        for run in DagRun.objects.filter(dag=dag, state=RunState.QUEUED).order_by("created_at"):
            if not _has_room(dag, limit):
                break
            _start(run)
            started += 1
    return started


def _locked_dag(dag: Dag | str) -> Dag:
    dag_id = dag if isinstance(dag, str) else dag.dag_id
    try:
        dag = Dag.objects.select_for_update().get(dag_id=dag_id)
    except Dag.DoesNotExist:
        raise TriggerError(f"no DAG with id '{dag_id}'") from None
    if not dag.is_active:
        raise TriggerError(f"DAG '{dag_id}' is deactivated; resubmit it to use it again")
    if dag.current_version_id is None:
        raise TriggerError(f"DAG '{dag_id}' has no version")
    return dag


def _has_room(dag: Dag, max_active_runs: int) -> bool:
    # The Dag row is locked by the caller, so two triggers cannot both take the last slot.
    return DagRun.objects.filter(dag=dag, state=RunState.RUNNING).count() < max_active_runs


def _start(run: DagRun) -> None:
    """queued -> running, and its root task instances pending -> queued, published on commit."""
    if states.start_run(run.id):
        run.state, run.started_at = RunState.RUNNING, timezone.now()
    compiled = compiled_version(run.dag_version_id)
    roots = list(
        TaskInstance.objects.filter(
            run=run, pending_upstream=0, state=TaskState.PENDING
        ).values_list("id", "task_id")
    )
    moved = set(states.leave_pending([pk for pk, _ in roots], TaskState.QUEUED))
    publish_on_commit(
        TaskMessage(pk, 0, compiled.tasks[task_id]["queue"]) for pk, task_id in roots if pk in moved
    )


class RunFinished(ValueError):
    """The run already ended; the message says how."""


def cancel_run(run: DagRun) -> DagRun:
    """Cancel a run: pending and queued tasks are cancelled, running ones stopped."""
    if not states.cancel_run(run.id):
        run.refresh_from_db()
        raise RunFinished(f"run {run.id} already finished ({run.state}); nothing to cancel")
    run.refresh_from_db()
    transaction.on_commit(lambda: admit_queued_runs(run.dag_id))
    return run
