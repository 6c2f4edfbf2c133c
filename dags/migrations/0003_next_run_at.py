"""Dag.next_run_at: the next tick that gets a run, planned from each DAG's schedule."""

from django.db import migrations, models
from django.utils import timezone


def plan_existing(apps, schema_editor):
    from dags.dag_spec import DagSpec
    from dags.schedules import first_tick

    Dag = apps.get_model("dags", "Dag")
    now = timezone.now()
    for dag in Dag.objects.filter(current_version__isnull=False).select_related("current_version"):
        dag.next_run_at = first_tick(DagSpec.from_json(dag.current_version.spec), now)
        dag.save(update_fields=["next_run_at"])


class Migration(migrations.Migration):
    dependencies = [("dags", "0002_kind_and_permissions")]

    operations = [
        migrations.AddField(
            model_name="dag",
            name="next_run_at",
            field=models.DateTimeField(blank=True, db_index=True, null=True),
        ),
        migrations.RunPython(plan_existing, migrations.RunPython.noop),
    ]
