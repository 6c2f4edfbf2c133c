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


def post_concurrently(client: APIClient, path: str, body: dict, key: str, times: int = 2):
    """POST the same body with the same Idempotency-Key from `times` threads at once."""
    import threading

    from django.db import connection

    codes, barrier = [], threading.Barrier(times)

    def post() -> None:
        own = APIClient()
        own.credentials(**client._credentials)
        barrier.wait()
        codes.append(own.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key).status_code)
        connection.close()  # each thread has its own database connection

    threads = [threading.Thread(target=post) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(codes)
