"""The three roles as Django groups: viewer reads, operator also runs things, admin also
submits DAGs (which is running arbitrary commands on workers)."""

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


def ensure_roles(group_model=None, permission_model=None) -> None:
    """Create the role groups with their permissions (idempotent).

    Takes the models as arguments so that a migration can pass its historical ones.
    """
    if group_model is None or permission_model is None:
        from django.contrib.auth.models import Group, Permission

        group_model, permission_model = Group, Permission
    for role, names in ROLES.items():
        group, _ = group_model.objects.get_or_create(name=role)
        group.permissions.add(
            *(
                permission_model.objects.get(content_type__app_label=app, codename=codename)
                for app, codename in names
            )
        )
