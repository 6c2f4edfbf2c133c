"""Grant the view permission of the repairs' audit trail (runs/roles.py) to every role,
so that the admin's run page shows who repaired it."""

from django.db import migrations


def grant_repair_permissions(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    from runs.roles import ensure_roles

    # As in 0008_pool_roles: permissions are otherwise created only after the whole migrate.
    app_config = apps.get_app_config("runs")
    app_config.models_module = True  # historical app configs lack it; create_permissions checks it
    create_permissions(app_config, verbosity=0, apps=apps)
    app_config.models_module = None
    ensure_roles(
        apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"), missing_ok=True
    )


class Migration(migrations.Migration):
    dependencies = [("runs", "0011_repairs")]
    operations = [migrations.RunPython(grant_repair_permissions, migrations.RunPython.noop)]
