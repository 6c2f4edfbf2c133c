"""The one place that writes django-celery-beat's tables: each DAG's PeriodicTask, kept in
step with its schedule and flags, and the fixed-interval entries FlowForge runs itself
(the reconciler)."""

from __future__ import annotations

import json

from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from .models import Dag

SCHEDULED_TRIGGER_TASK = "flowforge.trigger_scheduled"


def periodic_task_name(dag: Dag) -> str:
    return f"flowforge:{dag.dag_id}"


def sync(dag: Dag) -> PeriodicTask | None:
    """Create, update or disable the beat entry that triggers `dag` on its cron."""
    cron = dag.cron
    name = periodic_task_name(dag)
    if not cron:
        PeriodicTask.objects.filter(name=name).delete()
        return None
    minute, hour, day_of_month, month, day_of_week = cron.split()
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month,
        day_of_week=day_of_week,
        timezone=dag.timezone,
    )
    task, _ = PeriodicTask.objects.update_or_create(
        name=name,
        defaults={
            "task": SCHEDULED_TRIGGER_TASK,
            "crontab": crontab,
            "interval": None,
            "args": json.dumps([dag.dag_id]),
            "enabled": dag.is_active and not dag.is_paused,
        },
    )
    return task


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
