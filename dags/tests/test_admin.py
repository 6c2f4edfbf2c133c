"""The DAG admin: adding and resubmitting YAML, the run/pause/deactivate actions, roles."""

import json

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from dags.models import Dag, DagVersion
from dags.services import submit_dag
from runs.models import DagRun
from runs.roles import ensure_roles

pytestmark = pytest.mark.django_db

V1 = "id: pipe\nparams: {day: sunday, size: 1}\ntasks:\n  - {id: a, command: echo one}\n"
V2 = "id: pipe\nparams: {day: sunday, size: 1}\ntasks:\n  - {id: a, command: echo two}\n"
ADD = reverse("admin:dags_dag_add")
DAGS = reverse("admin:dags_dag_changelist")


def role_client(role: str) -> Client:
    """A client logged in as a staff user in one of the runs.roles groups."""
    ensure_roles()
    user = get_user_model().objects.create_user(f"{role}-staff", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def staff_viewer() -> Client:
    return role_client("viewer")


@pytest.fixture
def staff_operator() -> Client:
    return role_client("operator")


def change_url(dag: Dag) -> str:
    return reverse("admin:dags_dag_change", args=[dag.pk])


def texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def act(client: Client, action: str, dags: list[Dag], **extra):
    data = {"action": action, "_selected_action": [d.pk for d in dags], **extra}
    return client.post(DAGS, data)


# --- adding and resubmitting YAML


def test_add_page_is_one_yaml_textarea(admin_client):
    page = admin_client.get(ADD)
    assert page.status_code == 200
    assert list(page.context["adminform"].form.fields) == ["yaml"]
    assert b'name="_addanother"' not in page.content


def test_adding_yaml_creates_dag_version_1(admin_client):
    response = admin_client.post(ADD, {"yaml": V1})
    dag = Dag.objects.get(dag_id="pipe")
    assert response.status_code == 302
    assert response.url == change_url(dag)
    assert dag.current_version.version == 1
    assert dag.current_version.source == V1
    assert any("created: version 1" in text for text in texts(response))


def test_rejected_yaml_shows_every_error_and_stores_nothing(admin_client):
    bad = "id: pipe\ntasks:\n  - {id: a, command: echo, depend_on: [b]}\n  - {id: a}\n"
    page = admin_client.post(ADD, {"yaml": bad})
    assert page.status_code == 200
    errors = page.context["adminform"].form.errors["yaml"]
    assert len(errors) >= 2
    assert any("did you mean 'depends_on'" in error for error in errors)
    assert "did you mean" in page.content.decode()
    assert not Dag.objects.exists()
    assert not DagVersion.objects.exists()


def test_yaml_syntax_error_is_a_form_error(admin_client):
    page = admin_client.post(ADD, {"yaml": "id: [unclosed\n"})
    assert page.status_code == 200
    assert page.context["adminform"].form.errors["yaml"]
    assert not Dag.objects.exists()


def test_change_page_shows_the_dag_and_prefills_its_yaml(admin_client):
    dag = submit_dag(V1).dag
    page = admin_client.get(change_url(dag))
    assert page.status_code == 200
    assert page.context["adminform"].form.initial["yaml"] == V1
    html = page.content.decode()
    for shown in ("pipe", "manual only", "v1", "Submit a new version"):
        assert shown in html


def test_resubmitting_changed_yaml_makes_version_2(admin_client):
    dag = submit_dag(V1).dag
    response = admin_client.post(change_url(dag), {"yaml": V2})
    assert response.status_code == 302
    dag.refresh_from_db()
    assert dag.current_version.version == 2
    assert DagVersion.objects.filter(dag=dag).count() == 2
    assert any("new version 2" in text for text in texts(response))


def test_resubmitting_identical_yaml_reports_unchanged(admin_client):
    dag = submit_dag(V1).dag
    response = admin_client.post(change_url(dag), {"yaml": V1})
    assert response.status_code == 302
    assert any("unchanged" in text for text in texts(response))
    assert DagVersion.objects.filter(dag=dag).count() == 1


def test_resubmit_of_another_dag_id_is_refused_and_rolled_back(admin_client):
    dag = submit_dag(V1).dag
    page = admin_client.post(change_url(dag), {"yaml": V1.replace("id: pipe", "id: other")})
    assert page.status_code == 200
    assert "not 'pipe'" in " ".join(page.context["adminform"].form.errors["yaml"])
    assert not Dag.objects.filter(dag_id="other").exists()


def test_resubmit_with_errors_keeps_the_current_version(admin_client):
    dag = submit_dag(V1).dag
    page = admin_client.post(change_url(dag), {"yaml": V1 + "bogus: 1\n"})
    assert page.status_code == 200
    assert page.context["adminform"].form.errors["yaml"]
    dag.refresh_from_db()
    assert dag.current_version.version == 1


def test_dag_versions_are_read_only(admin_client):
    version = submit_dag(V1).version
    assert admin_client.get(reverse("admin:dags_dagversion_add")).status_code == 403
    url = reverse("admin:dags_dagversion_change", args=[version.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    assert b"echo one" in page.content
    assert admin_client.post(url, {"version": 7}).status_code == 403
    assert reverse("admin:dags_dagversion_delete", args=[version.pk])
    deleting = admin_client.post(reverse("admin:dags_dagversion_delete", args=[version.pk]))
    assert deleting.status_code == 403


# --- actions


def test_dag_actions_offered_and_no_delete(admin_client):
    submit_dag(V1)
    actions = dict(admin_client.get(DAGS).context["action_form"].fields["action"].choices)
    assert set(actions) == {"", "trigger", "pause", "unpause", "deactivate"}


def test_trigger_action_asks_for_params_then_triggers(admin_client):
    dag = submit_dag(V1).dag
    page = act(admin_client, "trigger", [dag])
    assert page.status_code == 200
    assert page.templates[0].name == "admin/dags/dag/trigger_run.html"
    assert not DagRun.objects.exists()
    response = act(admin_client, "trigger", [dag], apply="Trigger", params='{"day": "monday"}')
    assert response.status_code == 302
    run = DagRun.objects.get()
    assert run.params == {"day": "monday", "size": 1}
    assert run.triggered_by == "admin"
    assert any("triggered" in text for text in texts(response))


@pytest.mark.parametrize(
    "params, fragment",
    [("{day: monday}", "not valid JSON"), ('["monday"]', "not an array"), ("3", "not a number")],
)
def test_bad_params_are_an_error_on_the_page(admin_client, params, fragment):
    dag = submit_dag(V1).dag
    page = act(admin_client, "trigger", [dag], apply="Trigger", params=params)
    assert page.status_code == 200
    assert fragment in page.content.decode()
    assert not DagRun.objects.exists()


def test_trigger_of_deactivated_dag_is_an_error_message(admin_client):
    dag = submit_dag(V1).dag
    act(admin_client, "deactivate", [dag])
    response = act(admin_client, "trigger", [dag], apply="Trigger", params="{}")
    assert response.status_code == 302
    assert any("deactivated" in text for text in texts(response))
    assert not DagRun.objects.exists()


def test_pause_unpause_deactivate(admin_client):
    dag = submit_dag(V1).dag
    act(admin_client, "pause", [dag])
    dag.refresh_from_db()
    assert dag.is_paused
    act(admin_client, "unpause", [dag])
    dag.refresh_from_db()
    assert not dag.is_paused
    response = act(admin_client, "deactivate", [dag])
    assert response.status_code == 302
    dag.refresh_from_db()
    assert not dag.is_active
    assert Dag.objects.filter(pk=dag.pk).exists()


# --- roles


def test_viewer_sees_dags_but_no_actions_and_cannot_add(staff_viewer):
    dag = submit_dag(V1).dag
    listing = staff_viewer.get(DAGS)
    assert listing.status_code == 200
    assert listing.context["action_form"] is None
    assert staff_viewer.get(ADD).status_code == 403
    assert staff_viewer.post(ADD, {"yaml": V2}).status_code == 403
    page = staff_viewer.get(change_url(dag))
    assert page.status_code == 200
    assert b"echo one" in page.content  # the source, read-only
    assert b"<textarea" not in page.content
    assert staff_viewer.post(change_url(dag), {"yaml": V2}).status_code == 403
    act(staff_viewer, "pause", [dag], apply="Trigger")
    dag.refresh_from_db()
    assert not dag.is_paused


def test_operator_runs_and_pauses_but_does_not_submit(staff_operator):
    dag = submit_dag(V1).dag
    actions = dict(staff_operator.get(DAGS).context["action_form"].fields["action"].choices)
    assert set(actions) == {"", "trigger", "pause", "unpause"}
    assert staff_operator.get(ADD).status_code == 403
    act(staff_operator, "trigger", [dag], apply="Trigger", params=json.dumps({}))
    assert DagRun.objects.filter(dag=dag).count() == 1
