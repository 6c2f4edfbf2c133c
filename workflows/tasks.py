"""The Celery tasks, thin entry points into the engine, and the beat signal handler that
keeps the scheduler's and the reconciler's beat entries. (Graceful worker shutdown:
workflows/shutdown.py.)"""

from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import Reject
from celery.signals import beat_init
from django.conf import settings

from dags import schedules
from dags.schedules import SCHEDULE_TASK

from . import attempts, reconciler, shutdown

log = logging.getLogger(__name__)

# When the database was unreachable for the whole claim wait, the message comes back
# this much later (and again, for as long as it takes).
CLAIM_RETRY_COUNTDOWN_SECS = 10


@shared_task(name="flowforge.execute_task", bind=True, ignore_result=True, max_retries=None)
def execute_task(self, instance_id: int, try_number: int) -> None:
    """Run one attempt of a task instance; duplicates of this message do nothing."""
    shutdown.install_sigterm_handler()
    if shutdown.starting_refused():  # on its way in as the worker began to stop
        raise Reject("the worker is shutting down", requeue=True)
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


@shared_task(name=SCHEDULE_TASK, ignore_result=True)
def schedule() -> dict:
    """Fired by beat every FLOWFORGE_SCHEDULE_SECS: the runs of the cron ticks now due,
    and the runs past their run_timeout."""
    from runs.scheduler import schedule_due
    from runs.timeouts import time_out_due_runs

    return {**schedule_due().as_dict(), "timed_out": time_out_due_runs()}


@beat_init.connect
def keep_beat_entries(sender, **kwargs) -> None:
    """The migrations create both entries; beat sets their intervals to its own settings
    when it starts, and brings back one that was deleted."""
    reconciler.ensure_schedule()
    schedules.ensure_interval_entry(SCHEDULE_TASK, SCHEDULE_TASK, settings.FLOWFORGE_SCHEDULE_SECS)
