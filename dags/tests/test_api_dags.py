"""The DAG endpoints: submit (JSON and raw YAML), list, detail, pause, deactivate, roles."""

from pathlib import Path

import pytest

from dags.models import Dag, DagVersion

pytestmark = pytest.mark.django_db

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
YAML = "id: api-dag\nschedule: '@hourly'\ntasks:\n  - {id: a, command: echo hi}\n"


def test_submit_json_then_raw_yaml_then_changed(admin):
    created = admin.post("/api/v1/dags", {"yaml": YAML}, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["dag_id"], body["version"], body["is_paused"]) == ("api-dag", 1, False)
    assert body["tasks"] == [
        {
            "task_id": "a",
            "name": "a",
            "type": "shell",
            "depends_on": [],
            "trigger_rule": "all_success",
            "retries": 0,
            "timeout_secs": 3600,
            "queue": "default",
        }
    ]
    assert body["next_run_at"] is not None
    assert (body["schedule"], body["cron"]) == ("@hourly", "0 * * * *")  # what the user wrote
    same = admin.post("/api/v1/dags/", YAML, content_type="application/yaml")
    assert (same.status_code, same.json()["outcome"]) == (200, "unchanged")
    changed = admin.post(
        "/api/v1/dags", YAML.replace("echo hi", "echo bye"), content_type="application/yaml"
    )
    assert (changed.status_code, changed.json()["version"]) == (200, 2)


def test_rejected_file_lists_every_problem_and_changes_nothing(admin):
    admin.post("/api/v1/dags", {"yaml": YAML}, format="json")
    bad = "id: api-dag\ntasks:\n  - {id: a, command: x, retry: 3, depends_on: [zz]}\n"
    response = admin.post("/api/v1/dags", {"yaml": bad}, format="json")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert any("zz" in e for e in errors) and any("retry" in e for e in errors)
    assert DagVersion.objects.count() == 1


@pytest.mark.parametrize(
    "body, content_type, fragment",
    [
        ("{not json", "application/json", "JSON parse error"),
        ("id: [unclosed", "application/yaml", "YAML syntax error"),
        ('{"yaml": 5}', "application/json", "yaml"),
        ('{"other": "x"}', "application/json", "yaml: This field is required"),
        ("<dag/>", "application/xml", "Unsupported media type"),
    ],
)
def test_malformed_submissions_are_4xx_with_a_message(admin, body, content_type, fragment):
    response = admin.generic("POST", "/api/v1/dags", body, content_type=content_type)
    assert 400 <= response.status_code < 500
    assert fragment in response.json()["error"]


def test_list_detail_pause_unpause_delete(admin):
    admin.post("/api/v1/dags", {"yaml": YAML}, format="json")
    listed = admin.get("/api/v1/dags").json()
    assert listed["count"] == 1 and listed["results"][0]["dag_id"] == "api-dag"
    assert set(listed) == {"count", "next", "previous", "results"}
    paused = admin.post("/api/v1/dags/api-dag/pause").json()
    assert paused["is_paused"] is True and paused["next_run_at"] is None
    assert admin.post("/api/v1/dags/api-dag/unpause/").json()["is_paused"] is False
    assert admin.delete("/api/v1/dags/api-dag").status_code == 204
    detail = admin.get("/api/v1/dags/api-dag/").json()
    assert detail["is_active"] is False and detail["next_run_at"] is None
    assert admin.get("/api/v1/dags/nope").json()["error"] == "no DAG with id 'nope'"


def test_roles(viewer, operator, admin, anonymous):
    admin.post("/api/v1/dags", {"yaml": YAML}, format="json")
    assert anonymous.get("/api/v1/dags").status_code == 401
    assert viewer.get("/api/v1/dags").status_code == 200
    assert viewer.post("/api/v1/dags/api-dag/pause").status_code == 403
    assert operator.post("/api/v1/dags/api-dag/pause").status_code == 200
    assert operator.post("/api/v1/dags", {"yaml": YAML}, format="json").status_code == 403
    assert operator.delete("/api/v1/dags/api-dag").status_code == 403
    assert Dag.objects.get().is_active


def test_page_size_is_capped(admin):
    for n in range(3):
        admin.post("/api/v1/dags", {"yaml": YAML.replace("api-dag", f"d{n}")}, format="json")
    page = admin.get("/api/v1/dags?page_size=2").json()
    assert (page["count"], len(page["results"])) == (3, 2) and page["next"]
    assert len(admin.get("/api/v1/dags?page_size=5000").json()["results"]) == 3


def test_a_malformed_page_is_a_400_naming_the_parameter(admin):
    for query, name in [("page=abc", "page"), ("page=0", "page"), ("page_size=x", "page_size")]:
        response = admin.get(f"/api/v1/dags?{query}")
        assert response.status_code == 400, query
        assert response.json()["error"].startswith(f"{name}: must be a whole number"), query
    assert admin.get("/api/v1/runs?page=²").status_code == 400  # a digit, but not 0-9
    assert admin.get("/api/v1/dags?page=99").status_code == 404  # well-formed, past the end
