"""Who may do what through the API: Django permissions, granted by the three role groups
(viewer, operator, admin; see runs/migrations/0003_roles.py)."""

from rest_framework.permissions import SAFE_METHODS, BasePermission


class RolePermission(BasePermission):
    """Reads need the view's `read_permission`, writes its `write_permission`."""

    message = "your account lacks the role for this; ask an admin for the operator or admin role"

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if request.method in SAFE_METHODS:
            needed = getattr(view, "read_permission", None)
        else:
            needed = getattr(view, "write_permission", None)
        return needed is not None and user.has_perm(needed)
