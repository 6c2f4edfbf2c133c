"""The three roles as Django groups: viewer reads, operator also runs things, admin also
submits DAGs (which is running arbitrary commands on workers)."""

VIEW = [
    ("dags", "view_dag"),
    ("dags", "view_dagversion"),
    ("dags", "view_pool"),
    ("runs", "view_dagrun"),
    ("runs", "view_taskinstance"),
    ("runs", "view_taskattempt"),
    ("runs", "view_deadletter"),
    ("runs", "view_repair"),
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
ADMINISTER = [("dags", "submit_dag"), ("dags", "add_pool"), ("dags", "change_pool")]
ROLES = {"viewer": VIEW, "operator": VIEW + OPERATE, "admin": VIEW + OPERATE + ADMINISTER}


def ensure_roles(group_model=None, permission_model=None, *, missing_ok: bool = False) -> None:
    """Create the role groups with their permissions (idempotent).

    Takes the models as arguments so that a migration can pass its historical ones. A
    migration also passes `missing_ok`: a permission of a model that a later migration
    creates does not exist yet, and a later migration of runs grants it.
    """
    if group_model is None or permission_model is None:
        from django.contrib.auth.models import Group, Permission

        group_model, permission_model = Group, Permission
    for role, names in ROLES.items():
        group, _ = group_model.objects.get_or_create(name=role)
        candidates = permission_model.objects.filter(
            content_type__app_label__in={app for app, _ in names},
            codename__in={codename for _, codename in names},
        ).values_list("content_type__app_label", "codename", "pk")
        found = {(app, codename): pk for app, codename, pk in candidates}
        missing = [f"{app}.{codename}" for app, codename in names if (app, codename) not in found]
        if missing and not missing_ok:
            raise permission_model.DoesNotExist(f"no permission {', '.join(missing)}")
        group.permissions.add(*(found[name] for name in names if name in found))
