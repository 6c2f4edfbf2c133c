"""manage.py api_token USER [--role viewer|operator|admin]: print the user's API token.

A role also lets the user into the admin (staff), where it sees and does what the role's
permissions allow; set a password (manage.py changepassword USER) to log in there."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token

from runs.roles import ROLES, ensure_roles


class Command(BaseCommand):
    help = "Print a user's API token, creating the user (and giving a role) if asked."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", choices=list(ROLES), help="add the user to this role's group")

    def handle(self, *args, username: str, role: str | None, **options):
        user, created = get_user_model().objects.get_or_create(username=username)
        if created:
            user.set_unusable_password()
            user.save()
        if role:
            ensure_roles()
            user.groups.add(Group.objects.get(name=role))
            if not user.is_staff:  # the admin shows a role what its permissions allow
                user.is_staff = True
                user.save(update_fields=["is_staff"])
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)
