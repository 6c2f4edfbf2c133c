"""Run endpoints: trigger, list and filter, detail, tasks, logs, cancel, retry, DLQ."""

import uuid

import pytest

from runs.models import DagRun
from runs.tests.api_helpers import post_concurrently
from testkit.engine import submit, wait_for_run

pytestmark = pytest.mark.django_db(transaction=True)

PARKED = """
id: parked
params: {size: 1}
tasks:
  - {id: a, command: "true", queue: nobody-listens}
  - {id: b, command: "true", depends_on: [a], queue: nobody-listens}
"""


def test_trigger_both_ways_and_read_back(operator):
    submit(PARKED)
    first = operator.post("/api/v1/dags/parked/runs", {"params": {"size": 2}}, format="json")
    assert first.status_code == 201, first.json()
    run = first.json()
    assert (run["dag_id"], run["version"], run["state"], run["triggered_by"]) == (
        "parked",
        1,
        "running",
        "api",
    )
    assert run["params"] == {"size": 2}
    assert [t["task_id"] for t in run["tasks"]] == ["a", "b"]
    second = operator.post(
        "/api/v1/runs/", {"dag_id": "parked", "triggered_by": "cli"}, format="json"
    )
    assert second.status_code == 201 and second.json()["triggered_by"] == "cli"
    listed = operator.get("/api/v1/runs?dag_id=parked&state=running").json()
    assert [r["run_id"] for r in listed["results"]] == [second.json()["run_id"], run["run_id"]]
    detail = operator.get(f"/api/v1/runs/{run['run_id']}").json()
    assert detail["logical_date"] and detail["created_at"].endswith("Z")
    tasks = operator.get(f"/api/v1/runs/{run['run_id']}/tasks/").json()
    assert tasks["count"] == 2
    assert set(tasks["results"][0]) >= {
        "task_id",
        "state",
        "try_number",
        "max_tries",
        "started_at",
        "finished_at",
        "duration",
        "worker",
        "exit_code",
        "error",
    }
    assert tasks["results"][0]["try_number"] == 0 and tasks["results"][0]["max_tries"] == 1


@pytest.mark.parametrize(
    "path, body, status, fragment",
    [
        ("/api/v1/runs", {"dag_id": "nope"}, 404, "no DAG with id 'nope'"),
        ("/api/v1/runs", {"dag_id": "parked", "params": [1]}, 400, "params"),
        ("/api/v1/runs", {"dag_id": "parked", "params": "x"}, 400, "params"),
        ("/api/v1/runs", {"dag_id": 5}, 400, "dag_id"),
        ("/api/v1/runs", {"dag_id": "parked", "triggered_by": "Bad Name"}, 400, "triggered_by"),
        ("/api/v1/dags/parked/runs", {"params": 3}, 400, "params"),
    ],
)
def test_bad_triggers_are_4xx_with_a_message(operator, path, body, status, fragment):
    submit(PARKED)
    response = operator.post(path, body, format="json")
    assert response.status_code == status
    assert fragment in response.json()["error"]
    assert DagRun.objects.count() == 0


def test_unknown_ids_are_404(viewer):
    assert viewer.get(f"/api/v1/runs/{uuid.uuid4()}").status_code == 404
    assert viewer.get("/api/v1/runs/not-a-uuid").json()["error"] == "no run with id 'not-a-uuid'"
    assert viewer.get("/api/v1/runs?state=bogus").status_code == 400
    assert viewer.post("/api/v1/dlq/999/retry").status_code == 403
    assert viewer.get("/api/v1/jobs/abc").status_code == 404
    assert viewer.get("/api/v1/nowhere").status_code == 404


def test_trigger_of_deactivated_dag_is_refused(admin):
    submit(PARKED)
    admin.delete("/api/v1/dags/parked")
    response = admin.post("/api/v1/dags/parked/runs", {}, format="json")
    assert response.status_code == 400 and "deactivated" in response.json()["error"]


def test_idempotency_key_returns_the_first_run(operator):
    submit(PARKED)
    first = operator.post(
        "/api/v1/runs",
        {"dag_id": "parked"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="nightly-2026-01-01",
    )
    again = operator.post(
        "/api/v1/runs",
        {"dag_id": "parked"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="nightly-2026-01-01",
    )
    field = operator.post(
        "/api/v1/dags/parked/runs", {"idempotency_key": "nightly-2026-01-01"}, format="json"
    )
    assert (first.status_code, again.status_code, field.status_code) == (201, 200, 200)
    assert first.json()["run_id"] == again.json()["run_id"] == field.json()["run_id"]
    assert DagRun.objects.count() == 1


def test_concurrent_repeats_of_one_key_create_one_run(operator):
    submit(PARKED)
    assert post_concurrently(operator, "/api/v1/runs", {"dag_id": "parked"}, "race") == [200, 201]
    assert DagRun.objects.filter(idempotency_key="race").count() == 1


def test_roles_for_run_actions(viewer, operator, anonymous):
    submit(PARKED)
    assert anonymous.get("/api/v1/runs").status_code == 401
    assert viewer.get("/api/v1/runs").status_code == 200
    assert viewer.post("/api/v1/runs", {"dag_id": "parked"}, format="json").status_code == 403
    run_id = operator.post("/api/v1/runs", {"dag_id": "parked"}, format="json").json()["run_id"]
    assert viewer.post(f"/api/v1/runs/{run_id}/cancel").status_code == 403


def test_cancel_pending_run_then_cancel_again_is_409(operator):
    submit(PARKED)
    run_id = operator.post("/api/v1/runs", {"dag_id": "parked"}, format="json").json()["run_id"]
    cancelled = operator.post(f"/api/v1/runs/{run_id}/cancel/")
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled"
    assert {t["state"] for t in cancelled.json()["tasks"]} == {"cancelled"}
    again = operator.post(f"/api/v1/runs/{run_id}/cancel")
    assert again.status_code == 409 and "already finished" in again.json()["error"]


@pytest.mark.usefixtures("worker")
def test_logs_retry_and_dead_letter_retry_on_a_real_worker(operator, tmp_path):
    flag = tmp_path / "fixed"
    submit(f"""
id: fixable
tasks:
  - id: fragile
    command: "echo trying; test -f {flag} || (echo broken >&2; exit 4)"
  - id: after
    command: echo after
    depends_on: [fragile]
""")
    run_id = operator.post("/api/v1/runs", {"dag_id": "fixable"}, format="json").json()["run_id"]
    assert wait_for_run(run_id).state == "failed"
    logs = operator.get(f"/api/v1/runs/{run_id}/tasks/fragile/logs").json()
    assert [(a["try_number"], a["exit_code"]) for a in logs["attempts"]] == [(1, 4)]
    assert logs["attempts"][0]["stderr"].strip() == "broken"
    dlq = operator.get("/api/v1/dlq").json()["results"]
    assert [(d["dag_id"], d["task_id"], d["attempts"]) for d in dlq] == [("fixable", "fragile", 1)]

    not_failed = operator.post(f"/api/v1/runs/{run_id}/tasks/after/retry")
    assert not_failed.status_code == 409 and "only failed tasks" in not_failed.json()["error"]

    flag.write_text("ok")
    retried = operator.post(f"/api/v1/dlq/{dlq[0]['id']}/retry")
    assert retried.status_code == 200 and retried.json()["state"] == "running"
    run = wait_for_run(run_id)
    assert run.state == "success"
    tasks = {t["task_id"]: t for t in operator.get(f"/api/v1/runs/{run_id}").json()["tasks"]}
    assert (tasks["fragile"]["state"], tasks["fragile"]["try_number"]) == ("success", 2)
    assert tasks["after"]["state"] == "success"
    entry = operator.get("/api/v1/dlq").json()["results"][0]
    assert entry["retried_at"] is not None and entry["retried_by"] == "operator-user"
    again = operator.post(f"/api/v1/dlq/{dlq[0]['id']}/retry")
    assert again.status_code == 409 and "by operator-user" in again.json()["error"]
    trail = operator.get(f"/api/v1/runs/{run_id}").json()["repairs"]
    assert [(r["action"], r["task_id"], r["by"]) for r in trail] == [
        ("dlq_retry", "fragile", "operator-user")
    ]


@pytest.mark.usefixtures("worker")
def test_task_retry_endpoint_clears_downstream(operator, tmp_path):
    flag = tmp_path / "fixed"
    submit(f"""
id: fixable2
tasks:
  - {{id: fragile, command: "test -f {flag}"}}
  - {{id: after, command: "true", depends_on: [fragile]}}
""")
    run_id = operator.post("/api/v1/runs", {"dag_id": "fixable2"}, format="json").json()["run_id"]
    assert wait_for_run(run_id).state == "failed"
    flag.write_text("ok")
    assert operator.post(f"/api/v1/runs/{run_id}/tasks/fragile/retry").status_code == 200
    assert wait_for_run(run_id).state == "success"
