"""Keep each DAG's django-celery-beat PeriodicTask in step with its schedule and flags."""

from __future__ import annotations

import json

from django_celery_beat.models import CrontabSchedule, PeriodicTask

from .cron import spec_cron
from .models import Dag

SCHEDULED_TRIGGER_TASK = "flowforge.trigger_scheduled"


def periodic_task_name(dag: Dag) -> str:
    return f"flowforge:{dag.dag_id}"


def sync(dag: Dag) -> PeriodicTask | None:
    """Create, update or disable the beat entry that triggers `dag` on its cron."""
    cron = spec_cron(dag.spec)
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
