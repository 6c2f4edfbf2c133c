"""Logged-in test clients for the dashboard's role tests, and the messages a page set."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.test import Client

from runs.roles import ensure_roles


def login(role: str) -> Client:
    """A client logged in as a new user of `role` (viewer, operator, admin)."""
    ensure_roles()  # transactional tests flush the groups the migration made
    user = get_user_model().objects.create_user(f"{role}-user")
    user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client


def texts(response) -> list[str]:
    """The messages (django.contrib.messages) the response's request set."""
    return [str(m) for m in get_messages(response.wsgi_request)]
