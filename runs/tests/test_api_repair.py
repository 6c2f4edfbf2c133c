"""Repair endpoints (CONTRACT section 9): clear, mark, rerun; their audit trail on the run
object; bad input answered 400, 404 or 409 with nothing changed."""

import pytest

from runs.models import DagRun, Repair, TaskInstance
from testkit.engine import submit

pytestmark = pytest.mark.django_db(transaction=True)

# Nothing consumes `nobody-listens`: the tasks stay where the repairs put them.
PARKED = """
id: parked
tasks:
  - {id: a, command: "true", queue: nobody-listens}
  - {id: b, command: "true", depends_on: [a], queue: nobody-listens}
"""


@pytest.fixture
def run_id(operator) -> str:
    submit(PARKED)
    return operator.post("/api/v1/dags/parked/runs", {}, format="json").json()["run_id"]


def states(run_id: str) -> dict[str, tuple[str, int]]:
    rows = TaskInstance.objects.filter(run_id=run_id)
    return {ti.task_id: (ti.state, ti.try_number) for ti in rows}


def test_mark_then_clear_answer_with_the_run_and_keep_an_audit_trail(operator, run_id):
    marked = operator.post(
        f"/api/v1/runs/{run_id}/tasks/a/mark", {"state": "success"}, format="json"
    )
    assert marked.status_code == 200, marked.json()
    body = marked.json()
    assert {t["task_id"]: t["state"] for t in body["tasks"]} == {"a": "success", "b": "queued"}
    (entry,) = body["repairs"]
    assert entry["action"] == "mark" and entry["task_id"] == "a"
    assert entry["details"] == {"state": "success", "was": "queued"}
    assert (entry["tasks"], entry["by"]) == (["a", "b"], "operator-user")
    assert entry["at"].endswith("Z") or "+" in entry["at"]

    cleared = operator.post(f"/api/v1/runs/{run_id}/tasks/a/clear/", {}, format="json")
    assert cleared.status_code == 200, cleared.json()
    assert {t["task_id"]: t["state"] for t in cleared.json()["tasks"]} == {
        "a": "queued",
        "b": "pending",
    }
    assert [r["action"] for r in cleared.json()["repairs"]] == ["mark", "clear"]
    assert cleared.json()["repairs"][1]["details"] == {"downstream": True}
    listed = operator.get("/api/v1/runs?dag_id=parked").json()["results"][0]
    assert [r["action"] for r in listed["repairs"]] == ["mark", "clear"]


def test_rerun_of_a_cancelled_run_runs_its_cancelled_tasks_again(operator, run_id):
    assert operator.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200
    rerun = operator.post(f"/api/v1/runs/{run_id}/rerun")
    assert rerun.status_code == 200, rerun.json()
    assert rerun.json()["state"] == "running"
    assert states(run_id) == {"a": ("queued", 0), "b": ("pending", 0)}
    (entry,) = rerun.json()["repairs"]
    assert (entry["action"], entry["task_id"], entry["tasks"]) == ("rerun", None, ["a", "b"])


def test_repairing_a_task_of_a_cancelled_run_revives_the_run_whole(operator, run_id):
    assert operator.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200
    marked = operator.post(
        f"/api/v1/runs/{run_id}/tasks/a/mark", {"state": "success"}, format="json"
    )
    assert marked.status_code == 200, marked.json()
    assert marked.json()["state"] == "running"
    assert states(run_id) == {"a": ("success", 0), "b": ("queued", 0)}
    assert marked.json()["repairs"][0]["tasks"] == ["a", "b"]


def test_rerun_of_a_running_run_is_409_and_changes_nothing(operator, run_id):
    before = states(run_id)
    answer = operator.post(f"/api/v1/runs/{run_id}/rerun/")
    assert answer.status_code == 409
    assert "still running" in answer.json()["error"]
    assert states(run_id) == before and not Repair.objects.exists()


def test_a_stale_try_number_is_409_naming_the_tasks_state_and_try_now(operator, run_id):
    answer = operator.post(f"/api/v1/runs/{run_id}/tasks/a/clear", {"try_number": 3}, format="json")
    assert answer.status_code == 409
    body = answer.json()
    assert (body["task_id"], body["state"], body["try_number"]) == ("a", "queued", 0)
    assert "now queued (try 0)" in body["error"] and "(try 3)" in body["error"]
    assert states(run_id) == {"a": ("queued", 0), "b": ("pending", 0)}
    assert not Repair.objects.exists()


@pytest.mark.parametrize(
    ("path", "body", "code", "says"),
    [
        ("runs/{run}/tasks/nope/clear", {}, 404, "has no task 'nope'"),
        ("runs/{run}/tasks/nope/mark", {"state": "success"}, 404, "has no task 'nope'"),
        ("runs/00000000-0000-0000-0000-000000000000/tasks/a/clear", {}, 404, "no run"),
        ("runs/not-a-uuid/rerun", {}, 404, "no run"),
        ("runs/{run}/tasks/a/mark", {"state": "running"}, 400, "state"),
        ("runs/{run}/tasks/a/mark", {}, 400, "state"),
        ("runs/{run}/tasks/a/clear", {"downstream": "yes"}, 400, "downstream"),
        ("runs/{run}/tasks/a/clear", {"try_number": -1}, 400, "try_number"),
        ("runs/{run}/tasks/a/clear", {"try_number": "1"}, 400, "try_number"),
    ],
)
def test_bad_repairs_are_refused_and_change_nothing(operator, run_id, path, body, code, says):
    before = states(run_id)
    answer = operator.post("/api/v1/" + path.format(run=run_id), body, format="json")
    assert answer.status_code == code, answer.json()
    assert says in answer.json()["error"]
    assert states(run_id) == before
    assert DagRun.objects.get(id=run_id).state == "running"
    assert not Repair.objects.exists()


def test_viewers_cannot_repair(viewer, operator, run_id):
    for path, body in (
        (f"runs/{run_id}/tasks/a/clear", {}),
        (f"runs/{run_id}/tasks/a/mark", {"state": "success"}),
        (f"runs/{run_id}/rerun", {}),
    ):
        assert viewer.post(f"/api/v1/{path}", body, format="json").status_code == 403
    assert not Repair.objects.exists()
