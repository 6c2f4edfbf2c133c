"""The Celery tasks: thin entry points into the engine."""

from __future__ import annotations

import logging

from celery import shared_task

from .attempts import run_attempt

log = logging.getLogger(__name__)


@shared_task(name="flowforge.execute_task", bind=True, ignore_result=True)
def execute_task(self, instance_id: int, try_number: int) -> None:
    """Run one attempt of a task instance; duplicates of this message do nothing."""
    run_attempt(instance_id, try_number, worker=self.request.hostname or "unknown")


@shared_task(name="flowforge.dead_letter", ignore_result=True)
def dead_letter(entry: dict) -> None:
    """Consumed only by workers that listen on the dead_letter queue: a hook for alerts."""
    log.warning("dead letter: %s", entry)


@shared_task(name="flowforge.trigger_scheduled", ignore_result=True)
def trigger_scheduled(dag_id: str) -> str | None:
    """Fired by beat on a DAG's cron: the run of the latest tick, made at most once."""
    from django.utils import timezone

    from dags.cron import latest_tick
    from dags.models import Dag
    from runs.services import trigger_scheduled as trigger_tick

    dag = Dag.objects.filter(dag_id=dag_id, is_active=True, is_paused=False).first()
    if dag is None or not dag.schedule:
        log.info("not triggering %s: paused, deactivated or unscheduled", dag_id)
        return None
    run = trigger_tick(dag, latest_tick(dag.schedule, dag.timezone, timezone.now()))
    return str(run.id) if run else None
