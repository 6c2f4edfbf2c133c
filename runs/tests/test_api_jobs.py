"""Jobs and inline workflows: ordinary runs underneath, with idempotency keys."""

import pytest

from dags.models import Dag
from runs.models import DeadLetter, Job
from runs.tests.api_helpers import post_concurrently
from testkit.engine import wait_for, wait_for_run

pytestmark = pytest.mark.django_db(transaction=True)


def job_status(client, job_id):
    body = client.get(f"/api/v1/jobs/{job_id}").json()
    return body if body["status"] in ("success", "failed") else None


@pytest.mark.usefixtures("worker")
def test_job_runs_and_failing_job_is_dead_lettered(admin):
    ok = admin.post("/api/v1/jobs", {"type": "shell", "command": "echo job"}, format="json")
    assert ok.status_code == 201, ok.json()
    bad = admin.post(
        "/api/v1/jobs/",
        {"command": "exit 2", "max_retries": 1, "retry_delay_secs": 0.1},
        format="json",
    )
    done = wait_for(lambda: job_status(admin, ok.json()["id"]), message="job")
    assert done["status"] == "success" and done["run_id"] == ok.json()["run_id"]
    failed = wait_for(lambda: job_status(admin, bad.json()["id"]), message="bad job")
    assert (failed["status"], failed["attempts"]) == ("failed", 2)
    assert "status 2" in failed["error"]
    assert DeadLetter.objects.get().run_id.hex == bad.json()["run_id"].replace("-", "")
    listed = admin.get("/api/v1/jobs?status=failed").json()
    assert [j["id"] for j in listed["results"]] == [bad.json()["id"]]
    assert admin.get("/api/v1/dags").json()["count"] == 0  # jobs are not listed as DAGs


def test_job_validation_errors(admin):
    for body, fragment in [
        ({"type": "shell"}, "job: shell tasks need a 'command'"),
        ({"type": "http", "url": "ftp://x"}, "job: 'url'"),
        ({"command": "x", "max_retries": -1}, "job: 'max_retries' must be an integer from 0"),
        ({"command": "x", "max_retries": True}, "job: 'max_retries'"),
        ({"command": "x", "colour": "red"}, "unknown key 'colour'"),
        ([1, 2], "JSON object"),
    ]:
        response = admin.post("/api/v1/jobs", body, format="json")
        assert response.status_code == 400, body
        assert fragment in response.json()["error"], (body, response.json())
    assert Job.objects.count() == 0 and Dag.objects.count() == 0


def test_job_idempotency_key_header_and_field_and_race(admin):
    first = admin.post(
        "/api/v1/jobs",
        {"command": "true", "queue": "nobody-listens", "idempotency_key": "k1"},
        format="json",
    )
    again = admin.post(
        "/api/v1/jobs",
        {"command": "true", "queue": "nobody-listens"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k1",
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]

    body = {"command": "true", "queue": "nobody-listens"}
    assert post_concurrently(admin, "/api/v1/jobs", body, "k2") == [200, 201]
    assert Job.objects.filter(idempotency_key="k2").count() == 1


def test_operators_cannot_submit_jobs(operator):
    assert operator.post("/api/v1/jobs", {"command": "true"}, format="json").status_code == 403


@pytest.mark.usefixtures("worker")
def test_workflow_steps_run_in_order_unless_they_say_otherwise(admin, tmp_path):
    log = tmp_path / "order"
    created = admin.post(
        "/api/v1/workflows",
        {
            "name": "Nightly",
            "steps": [
                {"name": "Fetch", "command": f"echo fetch >> {log}"},
                {"name": "Clean", "command": f"echo clean >> {log}"},
                {"name": "Report", "command": f"echo report >> {log}", "depends_on": ["Fetch"]},
            ],
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    run = wait_for_run(body["run_id"])
    assert run.state == "success"
    assert log.read_text().splitlines()[0] == "fetch"
    detail = admin.get(f"/api/v1/workflows/{body['id']}").json()
    assert detail["status"] == "success"
    assert [t["task_id"] for t in detail["tasks"]] == ["fetch", "clean", "report"]
    assert (
        admin.post("/api/v1/workflows", {"name": "x", "steps": []}, format="json").status_code
        == 400
    )
