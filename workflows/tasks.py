"""The Celery tasks, thin entry points into the engine, and the worker and beat signal
handlers that make shutdown graceful and keep the reconciler scheduled."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading

from celery import shared_task
from celery.signals import beat_init, worker_shutting_down
from celery.worker import state as worker_state
from django.conf import settings

from . import attempts, reconciler

log = logging.getLogger(__name__)

# When the database was unreachable for the whole claim wait, the message comes back
# this much later (and again, for as long as it takes).
CLAIM_RETRY_COUNTDOWN_SECS = 10


@shared_task(name="flowforge.execute_task", bind=True, ignore_result=True, max_retries=None)
def execute_task(self, instance_id: int, try_number: int) -> None:
    """Run one attempt of a task instance; duplicates of this message do nothing."""
    attempts.install_shutdown_handler()
    try:
        attempts.run_attempt(instance_id, try_number, worker=self.request.hostname or "unknown")
    except attempts.DATABASE_UNAVAILABLE as exc:
        # Nothing was claimed: publish the message again rather than let the ack drop it.
        # Should that publish fail too, the reconciler republishes the queued instance.
        log.warning("task instance %s: database unavailable; message retried", instance_id)
        raise self.retry(exc=exc, countdown=CLAIM_RETRY_COUNTDOWN_SECS) from exc


@shared_task(name=reconciler.RECONCILE_TASK, ignore_result=True)
def reconcile() -> dict:
    """Fired by beat every FLOWFORGE_RECONCILE_SECS: one pass of the reconciler."""
    return reconciler.reconcile().as_dict()


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


@beat_init.connect
def keep_reconciler_scheduled(sender, **kwargs) -> None:
    reconciler.ensure_schedule()


_grace_timer: threading.Timer | None = None


@worker_shutting_down.connect
def start_shutdown_grace(sender, how: str = "Warm", **kwargs) -> None:
    """On a warm shutdown (SIGTERM), running attempts get FLOWFORGE_SHUTDOWN_GRACE_SECS to
    finish; those still running then are stopped and handed back to their retry policy.

    Celery's own warm shutdown would wait for them forever; its cold shutdown (SIGQUIT)
    already waits CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT and then signals the pool processes.
    """
    global _grace_timer
    if how != "Warm" or _grace_timer is not None:
        return
    _grace_timer = threading.Timer(settings.FLOWFORGE_SHUTDOWN_GRACE_SECS, stop_running_attempts)
    _grace_timer.daemon = True  # a worker whose attempts all ended exits without waiting
    _grace_timer.start()


def stop_running_attempts() -> None:
    """SIGTERM to each pool process that still runs a task (see workflows/attempts.py)."""
    pids = {request.worker_pid for request in list(worker_state.active_requests)} - {None}
    log.warning("shutdown grace over: stopping the attempts still running in %s", sorted(pids))
    for pid in pids:
        if pid == os.getpid():  # solo or threads pool: the attempts run in this process
            attempts.request_stop()
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
