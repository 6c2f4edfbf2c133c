"""The API's 403 names the permission a request lacks and the roles that would grant it."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from flowforge.permissions import either, granting_roles
from runs.roles import ensure_roles
from runs.tests.api_helpers import admin, anonymous, operator, viewer  # noqa: F401

SUBMIT = (
    "your account lacks the permission to submit and deactivate DAGs (dags.submit_dag); "
    "ask an admin for the admin role"
)
TRIGGER = (
    "your account lacks the permission to trigger runs (runs.trigger_dagrun); "
    "ask an admin for the operator or admin role"
)
YAML = "id: perm-dag\ntasks:\n  - {id: a, command: 'true'}\n"


def forbidden(response) -> str:
    """The 403's message, checked to be the same in `error` and `errors`."""
    assert response.status_code == 403, (response.status_code, response.content)
    body = response.json()
    assert body["errors"] == [body["error"]]
    return body["error"]


@pytest.fixture
def no_role():
    """A logged-in account in no role group."""
    ensure_roles()
    user = get_user_model().objects.create(username="nobody")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_roles_granting_a_permission_come_from_runs_roles():
    assert granting_roles("dags.submit_dag") == ["admin"]
    assert granting_roles("runs.trigger_dagrun") == ["operator", "admin"]
    assert granting_roles("dags.view_dag") == ["viewer", "operator", "admin"]
    assert granting_roles("dags.no_such_thing") == []
    assert either(["admin"]) == "admin"
    assert either(["operator", "admin"]) == "operator or admin"
    assert either(["viewer", "operator", "admin"]) == "viewer, operator or admin"


@pytest.mark.django_db
def test_an_operator_submitting_a_dag_is_told_it_takes_the_admin_role(operator):  # noqa: F811
    assert forbidden(operator.post("/api/v1/dags", {"yaml": YAML}, format="json")) == SUBMIT
    raw = operator.post("/api/v1/dags", YAML, content_type="application/yaml")
    assert forbidden(raw) == SUBMIT
    # Deactivating takes the same permission; the 403 comes before the DAG is looked up.
    assert forbidden(operator.delete("/api/v1/dags/perm-dag")) == SUBMIT


@pytest.mark.django_db
def test_a_viewer_triggering_is_told_it_takes_the_operator_or_admin_role(viewer):  # noqa: F811
    assert forbidden(viewer.post("/api/v1/runs", {"dag_id": "x"}, format="json")) == TRIGGER
    assert forbidden(viewer.post("/api/v1/dags/x/runs", {}, format="json")) == TRIGGER
    paused = forbidden(viewer.post("/api/v1/dags/x/pause"))
    assert paused == (
        "your account lacks the permission to pause and unpause DAGs (dags.pause_dag); "
        "ask an admin for the operator or admin role"
    )
    cancel = forbidden(viewer.post("/api/v1/runs/00000000-0000-0000-0000-000000000000/cancel"))
    assert "(runs.cancel_dagrun)" in cancel and cancel.endswith("the operator or admin role")


@pytest.mark.django_db
def test_an_account_in_no_role_is_told_any_role_can_read(no_role):
    assert forbidden(no_role.get("/api/v1/dags")) == (
        "your account lacks the permission to view DAG (dags.view_dag); "
        "ask an admin for the viewer, operator or admin role"
    )


@pytest.mark.django_db
def test_a_method_the_endpoint_lacks_is_a_405_not_a_role_problem(admin, viewer):  # noqa: F811
    for client in (admin, viewer):
        response = client.post("/api/v1/status")
        assert response.status_code == 405, response.content
        assert response.json()["error"] == 'Method "POST" not allowed.'
        assert response.headers["Allow"] == "GET, HEAD, OPTIONS"


@pytest.mark.django_db
def test_the_roles_that_have_the_permission_pass(operator, admin):  # noqa: F811
    assert operator.post("/api/v1/dags/x/pause").status_code == 404  # past the permission
    assert admin.post("/api/v1/dags", {"yaml": YAML}, format="json").status_code == 201


@pytest.mark.django_db
def test_anonymous_requests_stay_401(anonymous):  # noqa: F811
    for response in (
        anonymous.post("/api/v1/dags", {"yaml": YAML}, format="json"),
        anonymous.post("/api/v1/runs", {"dag_id": "x"}, format="json"),
        anonymous.get("/api/v1/dags"),
    ):
        assert response.status_code == 401, response.content
        assert "lacks" not in response.json()["error"]
