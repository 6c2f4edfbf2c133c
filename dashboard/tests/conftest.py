import pytest
from django.test import Client

from .roles import login


@pytest.fixture
def viewer() -> Client:
    return login("viewer")


@pytest.fixture
def operator() -> Client:
    return login("operator")
