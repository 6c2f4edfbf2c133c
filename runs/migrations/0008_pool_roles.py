"""Grant the pool permissions (runs/roles.py): viewers see pools, admins add and change
them. On a fresh database 0003_roles ran before dags.Pool existed and skipped them."""

from django.db import migrations


def grant_pool_permissions(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    from runs.roles import ensure_roles

    # As in 0003_roles: permissions are otherwise created only after the whole migrate.
    for label in ("dags", "runs"):
        app_config = apps.get_app_config(label)
        app_config.models_module = (
            True  # historical app configs lack it; create_permissions checks it
        )
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = None
    # missing_ok: a role may later gain the permission of a model newer than this.
    ensure_roles(
        apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"), missing_ok=True
    )


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0007_run_slots_and_pool_wait"),
        ("dags", "0004_pools"),
    ]
    operations = [migrations.RunPython(grant_pool_permissions, migrations.RunPython.noop)]
