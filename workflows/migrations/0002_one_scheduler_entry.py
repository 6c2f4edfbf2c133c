"""One beat entry, `flowforge.schedule`, asks FlowForge which ticks are due (runs/scheduler.py),
in place of one crontab entry per DAG (whose Celery crontab disagreed with cron)."""

from django.conf import settings
from django.db import migrations
from django.utils import timezone

NAME = "flowforge.schedule"


def one_entry(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(task="flowforge.trigger_scheduled").delete()
    every = settings.FLOWFORGE_SCHEDULE_SECS
    interval, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
    PeriodicTask.objects.update_or_create(
        name=NAME,
        defaults={"task": NAME, "interval": interval, "expire_seconds": every},
    )
    # What the real model's save() does: tells a running beat to reload its schedule.
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def remove_entry(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("workflows", "0001_reconcile_schedule")]

    operations = [migrations.RunPython(one_entry, remove_entry)]
