"""Who may do what through the API: Django permissions, granted by the three role groups
(viewer, operator, admin; see runs/migrations/0003_roles.py and runs/roles.py)."""

from rest_framework.permissions import SAFE_METHODS, BasePermission

from runs.roles import ROLES


def granting_roles(needed: str) -> list[str]:
    """The roles whose group holds the permission `needed` ("app_label.codename")."""
    app_label, _, codename = needed.partition(".")
    return [role for role, granted in ROLES.items() if (app_label, codename) in granted]


def either(names: list[str]) -> str:
    """`admin`, `operator or admin`, `viewer, operator or admin`."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def permission_phrase(needed: str) -> str:
    """`the permission to submit and deactivate DAGs (dags.submit_dag)`, from the name the
    model's Meta gives it; just the permission's code when it is not in the database."""
    from django.contrib.auth.models import Permission  # not at import time: apps load first

    app_label, _, codename = needed.partition(".")
    name = (
        Permission.objects.filter(content_type__app_label=app_label, codename=codename)
        .values_list("name", flat=True)
        .first()
    )
    if name and name.lower().startswith("can "):
        return f"the permission to {name[4:]} ({needed})"
    return f"the permission {needed}"


def denial(needed: str | None) -> str:
    """The one sentence of a 403: what is missing and which roles would grant it."""
    if needed is None:
        return "no account may do this"
    roles = granting_roles(needed)
    remedy = f"ask an admin for the {either(roles)} role" if roles else "ask an admin to grant it"
    return f"your account lacks {permission_phrase(needed)}; {remedy}"


class RolePermission(BasePermission):
    """Reads need the view's `read_permission`, writes its `write_permission`.

    A denial names the permission and the roles that grant it. DRF makes a new instance
    for every request, so `message` can be set per request."""

    message = "your account lacks the permission for this; ask an admin for a role"  # fallback

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False  # DRF answers 401: token authentication comes first
        if not hasattr(view, request.method.lower()):
            return True  # DRF answers 405 for a method the endpoint does not have
        if request.method in SAFE_METHODS:
            needed = getattr(view, "read_permission", None)
        else:
            needed = getattr(view, "write_permission", None)
        if needed is not None and user.has_perm(needed):
            return True
        self.message = denial(needed)
        return False
