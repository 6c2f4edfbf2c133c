"""The beat entry that runs the reconciler (workflows/reconciler.py) periodically.

Its interval is FLOWFORGE_RECONCILE_SECS as set when migrating; beat resets it to its own
setting when it starts (workflows.reconciler.ensure_schedule).
"""

from django.conf import settings
from django.db import migrations
from django.utils import timezone

NAME = "flowforge.reconcile"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every = settings.FLOWFORGE_RECONCILE_SECS
    interval, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
    PeriodicTask.objects.update_or_create(
        name=NAME,
        defaults={"task": "flowforge.reconcile", "interval": interval, "expire_seconds": every},
    )
    # What the real model's save() does: tells a running beat to reload its schedule.
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def delete_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("django_celery_beat", "0019_alter_periodictasks_options")]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
