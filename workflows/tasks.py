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
