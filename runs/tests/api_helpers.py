"""API clients for each role, shared by the API tests."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from runs.roles import ensure_roles


def client_for(role: str | None) -> APIClient:
    client = APIClient()
    if role is None:
        return client
    ensure_roles()  # transactional tests flush the groups the migration made
    user = get_user_model().objects.create(username=f"{role}-user")
    user.groups.add(Group.objects.get(name=role))
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def viewer():
    return client_for("viewer")


@pytest.fixture
def operator():
    return client_for("operator")


@pytest.fixture
def admin():
    return client_for("admin")


@pytest.fixture
def anonymous():
    return APIClient()
