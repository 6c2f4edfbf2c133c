"""Create the viewer, operator and admin groups (runs/roles.py says what each may do)."""

from django.db import migrations


def create_roles(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    from runs.roles import ensure_roles

    # Permissions are otherwise created only after the whole migrate, too late for this.
    for label in ("dags", "runs"):
        app_config = apps.get_app_config(label)
        app_config.models_module = (
            True  # historical app configs lack it; create_permissions checks it
        )
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = None
    # dags.Pool may come later than this (dags 0004): runs 0008 grants its permissions.
    ensure_roles(
        apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"), missing_ok=True
    )


def drop_roles(apps, schema_editor):
    from runs.roles import ROLES

    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("dags", "0002_kind_and_permissions"),
        ("runs", "0002_jobs_workflows_heartbeats"),
    ]
    operations = [migrations.RunPython(create_roles, drop_roles)]
