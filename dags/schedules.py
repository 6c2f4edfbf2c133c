"""Planning each DAG's next scheduled run, and the one place that writes django-celery-beat's
tables (CONTRACT section 7).

Beat holds fixed-interval entries only: `flowforge.schedule`, which asks the scheduler
(runs/scheduler.py) which ticks are due, and the reconciler's. Which moments are ticks is
decided by FlowForge's cron engine alone (dags/cron.py), never by Celery's crontab, so the
API's `next_run_at` and the runs beat makes cannot disagree.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from .dag_spec import DagSpec
from .models import Dag

SCHEDULE_TASK = "flowforge.schedule"


def _schedule_key(spec: DagSpec | None) -> tuple | None:
    """What decides a DAG's ticks: a new version with the same key keeps its plan."""
    if spec is None:
        return None
    return (spec.cron, spec.timezone, spec.start_date, spec.end_date, spec.catchup)


def first_tick(spec: DagSpec, now: datetime) -> datetime | None:
    """The first tick of a newly (re)scheduled DAG: the first at or after its start_date
    (ticks since then are missed: catchup runs them all, otherwise the latest of them
    runs), or with no start_date the first after `now`; None without a schedule or past
    its end_date."""
    schedule = spec.cron_schedule()
    if schedule is None:
        return None
    start = spec.start
    tick = schedule.first_at_or_after(start) if start else schedule.next_after(now)
    end = spec.end
    return None if end is not None and tick > end else tick


def plan(dag: Dag, previous: DagSpec | None, now: datetime | None = None) -> None:
    """Set and save `dag.next_run_at` for its current version, given the version before it
    (None: the first). The same schedule keeps its plan, so a new version neither loses
    nor repeats a tick; pausing and deactivating leave it as it is (the scheduler skips
    such DAGs, and on their return catches up from where it stopped)."""
    spec = dag.dag_spec
    if dag.next_run_at is not None and _schedule_key(previous) == _schedule_key(spec):
        return
    dag.next_run_at = first_tick(spec, now or timezone.now()) if spec else None
    Dag.objects.filter(pk=dag.pk).update(next_run_at=dag.next_run_at)


def ensure_interval_entry(name: str, task: str, every_secs: int) -> PeriodicTask:
    """Create or update the beat entry `name` that sends `task` every `every_secs`
    seconds. A send that waited longer than the interval expires: the next is due."""
    interval, _ = IntervalSchedule.objects.get_or_create(
        every=every_secs, period=IntervalSchedule.SECONDS
    )
    entry, _ = PeriodicTask.objects.update_or_create(
        name=name,
        defaults={
            "task": task,
            "interval": interval,
            "crontab": None,
            "expire_seconds": every_secs,
        },
    )
    return entry
