"""The three roles as Django groups: viewer reads, operator also runs things, admin also
submits DAGs (which is running arbitrary commands on workers)."""

from django.db import migrations

VIEW = [
    ("dags", "view_dag"),
    ("dags", "view_dagversion"),
    ("runs", "view_dagrun"),
    ("runs", "view_taskinstance"),
    ("runs", "view_taskattempt"),
    ("runs", "view_deadletter"),
    ("runs", "view_job"),
    ("runs", "view_workflow"),
    ("runs", "view_workerheartbeat"),
]
OPERATE = [
    ("runs", "trigger_dagrun"),
    ("runs", "cancel_dagrun"),
    ("runs", "retry_taskinstance"),
    ("dags", "pause_dag"),
]
ADMINISTER = [("dags", "submit_dag")]
ROLES = {"viewer": VIEW, "operator": VIEW + OPERATE, "admin": VIEW + OPERATE + ADMINISTER}


def create_roles(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # Permissions are otherwise created only after the whole migrate, too late for this.
    for label in ("dags", "runs"):
        app_config = apps.get_app_config(label)
        app_config.models_module = (
            True  # historical app configs lack it; create_permissions checks it
        )
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, names in ROLES.items():
        group, _ = Group.objects.get_or_create(name=role)
        for app_label, codename in names:
            group.permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )


def drop_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("dags", "0002_kind_and_permissions"),
        ("runs", "0002_jobs_workflows_heartbeats"),
    ]
    operations = [migrations.RunPython(create_roles, drop_roles)]
