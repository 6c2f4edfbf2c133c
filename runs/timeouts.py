"""Runs past their run_timeout (CONTRACT section 7), found by the once-a-second pass that
beat fires (workflows/tasks.py `schedule`), so a run fails within a second or two of its
deadline. The run's rows move in runs/states/timeouts.py."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from . import states, telemetry
from .models import DagRun
from .services import admit_queued_runs, republish

log = logging.getLogger(__name__)
BATCH = 100


def time_out_due_runs(now: datetime | None = None) -> int:
    """Fail every running run whose deadline has passed; returns how many."""
    now = now or timezone.now()
    due = DagRun.objects.filter(state=states.RunState.RUNNING, deadline_at__lte=now)
    timed_out = 0
    for run_id, dag_pk, dag_id in list(
        due.order_by().values_list("id", "dag_id", "dag__dag_id")[:BATCH]
    ):
        with transaction.atomic():
            stopped = states.time_out_run(run_id, now)
            if stopped is None:
                continue  # it finished, or was cancelled, meanwhile
            telemetry.run_finished(dag_id, states.RunState.FAILED)
            for pool, freed in stopped.freed_pools.items():
                republish(states.wake_waiting(pool=pool, count=freed))
            transaction.on_commit(lambda dag_pk=dag_pk: admit_queued_runs(dag_pk))
        log.warning("run %s timed out: %s task instances stopped", run_id, stopped.instances)
        timed_out += 1
    return timed_out
