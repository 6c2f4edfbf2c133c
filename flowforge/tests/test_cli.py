"""The `flowforge` CLI against a real web server process, worker, PostgreSQL and Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from runs.roles import ensure_roles
from testkit.engine import ROOT, wait_for
from testkit.web import free_port

pytestmark = pytest.mark.django_db(transaction=True)

ETL = str(ROOT / "examples" / "etl-pipeline.yaml")
ETL_TASKS = {"extract-users", "extract-orders", "transform", "load"}
ALWAYS_FAILS = """\
id: always-fails
name: Always fails
tasks:
  - id: doomed
    command: "echo going down >&2; exit 1"
    retries: 0
"""
SLOW = """\
id: slow-one
name: Slow one
params: {n: {type: integer, default: 1}}
tasks:
  - id: nap
    command: "sleep 30"
"""
QUICK = """\
id: quick-one
name: Quick one
tasks:
  - id: hello
    command: "echo hello"
"""
DEACTIVATED = "deactivated (no new runs; its history is kept; submit it again to reactivate)"


@pytest.fixture(scope="session")
def api_url(web_server) -> str:
    """The session's gunicorn (conftest.py), serving the API."""
    return web_server


@pytest.fixture
def token() -> str:
    """An admin's API token. Made per test: transactional tests flush every table after
    each test, the role groups (made by a data migration) included, hence ensure_roles."""
    ensure_roles()
    user = get_user_model().objects.create(username="cli-admin")
    user.groups.add(user.groups.model.objects.get(name="admin"))
    return Token.objects.create(user=user).key


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


def flowforge(*args: str, env: dict | None = None, timeout: float = 120) -> Result:
    """Run the CLI as a user would; the API URL and token come from `env` or flags."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLOWFORGE_")}
    done = subprocess.run(
        [sys.executable, "-m", "flowforge.cli", *args],
        cwd=ROOT,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def cli(api_url, token):
    """`flowforge` pointed at the test server through its environment variables."""
    env = {"FLOWFORGE_API_URL": api_url, "FLOWFORGE_TOKEN": token}
    return lambda *args, **kwargs: flowforge(*args, env=env, **kwargs)


def ok(result: Result) -> Result:
    assert result.code == 0, f"exit {result.code}\nstdout:\n{result.out}\nstderr:\n{result.err}"
    return result


def failed(result: Result) -> str:
    """The single stderr line of an expected failure (never a traceback)."""
    assert result.code != 0, result.out
    assert "Traceback" not in result.err, result.err
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("flowforge: "), lines[0]
    return lines[0]


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# --- a run driven to success --------------------------------------------------------


def test_submit_trigger_wait_and_inspect_the_run(cli):
    submitted = ok(cli("submit", "--file", ETL))
    assert "etl-pipeline: created, version 1" in submitted.out
    assert "etl-pipeline: unchanged, version 1" in ok(cli("submit", "--file", ETL)).out

    waited = ok(cli("trigger", "etl-pipeline", "--wait"))
    run_id = waited.out.split()[1]  # "run <id> of etl-pipeline: queued"
    assert f"run {run_id}: success" in waited.out

    run = ok(cli("run", run_id, "--json")).json()
    assert run["state"] == "success" and run["triggered_by"] == "cli"
    assert run["params"] == {}
    assert {t["task_id"]: t["state"] for t in run["tasks"]} == dict.fromkeys(ETL_TASKS, "success")

    shown = ok(cli("run", run_id)).out
    task_rows = [
        line.split() for line in shown.splitlines() if line.split()[:1] in ([t] for t in ETL_TASKS)
    ]
    assert len(task_rows) == 4 and all(row[1] == "success" for row in task_rows)

    runs = ok(cli("runs")).out.splitlines()
    assert runs[0].split()[:4] == ["RUN_ID", "DAG", "VERSION", "STATE"]
    assert runs[1].split()[:4] == [run_id, "etl-pipeline", "1", "success"]
    assert ok(cli("runs", "--state", "failed")).out.strip() == "no runs"

    logs = ok(cli("logs", run_id, "extract-users")).out
    assert "Extracting users..." in logs and "attempt 1: success" in logs


def test_dags_lists_submitted_dags_as_table_and_json(cli):
    ok(cli("submit", "-f", ETL))
    table = ok(cli("dags")).out.splitlines()
    assert table[0].split()[:3] == ["DAG_ID", "VERSION", "TASKS"]
    assert table[1].split()[:3] == ["etl-pipeline", "1", "4"]
    page = ok(cli("dags", "--json")).json()
    assert page["count"] == 1 and page["results"][0]["dag_id"] == "etl-pipeline"


def test_trigger_idempotency_key_then_cancel(cli, tmp_path):
    ok(cli("submit", "-f", write(tmp_path, "slow.yaml", SLOW)))
    first = ok(cli("trigger", "slow-one", "--idempotency-key", "k1", "--json", "-p", "n=3")).json()
    again = ok(cli("trigger", "slow-one", "--idempotency-key", "k1", "--json")).json()
    assert again["run_id"] == first["run_id"] and first["params"] == {"n": 3}

    cancelled = ok(cli("cancel", first["run_id"])).out
    assert cancelled.strip() == f"run {first['run_id']}: cancelled"
    assert "409 conflict" in failed(cli("cancel", first["run_id"]))


# --- pause, unpause, delete -----------------------------------------------------------


def dag_state(cli, dag_id: str) -> dict:
    """The DAG as `flowforge dags --json` lists it."""
    page = ok(cli("dags", "--json")).json()
    return next(dag for dag in page["results"] if dag["dag_id"] == dag_id)


def test_pause_then_unpause(cli, api_url, token):
    ok(cli("submit", "-f", ETL))
    assert dag_state(cli, "etl-pipeline")["is_paused"] is False
    assert dag_state(cli, "etl-pipeline")["next_run_at"] is not None

    assert ok(cli("pause", "etl-pipeline")).out == "etl-pipeline: paused\n"
    paused = dag_state(cli, "etl-pipeline")
    assert paused["is_paused"] is True and paused["next_run_at"] is None
    assert ok(cli("pause", "etl-pipeline")).out == "etl-pipeline: paused\n"  # again: no-op

    # Global options before and after the command; --json prints the API's DAG object.
    before = flowforge("--api-url", api_url, "--token", token, "--json", "unpause", "etl-pipeline")
    dag = ok(before).json()
    assert dag["dag_id"] == "etl-pipeline" and dag["is_paused"] is False
    assert {task["task_id"] for task in dag["tasks"]} == ETL_TASKS
    assert dag_state(cli, "etl-pipeline")["is_paused"] is False

    after = flowforge("pause", "etl-pipeline", "--json", "--api-url", api_url, "--token", token)
    assert ok(after).json()["is_paused"] is True
    assert ok(cli("unpause", "etl-pipeline")).out == "etl-pipeline: unpaused\n"
    assert dag_state(cli, "etl-pipeline")["is_paused"] is False


def test_delete_deactivates_and_keeps_the_history(cli, api_url, token, tmp_path):
    ok(cli("submit", "-f", write(tmp_path, "quick.yaml", QUICK)))
    run_id = ok(cli("trigger", "quick-one", "--wait")).out.split()[1]

    assert ok(cli("delete", "quick-one")).out == f"quick-one: {DEACTIVATED}\n"
    assert dag_state(cli, "quick-one")["is_active"] is False
    runs = ok(cli("runs", "--dag-id", "quick-one", "--json")).json()["results"]
    assert [(run["run_id"], run["state"]) for run in runs] == [(run_id, "success")]

    line = failed(cli("trigger", "quick-one"))
    assert line.startswith("flowforge: 400 bad request:") and "quick-one" in line
    assert "deactivated" in line

    ok(cli("submit", "-f", ETL))
    deleted = flowforge("delete", "etl-pipeline", "--json", "--api-url", api_url, "--token", token)
    assert ok(deleted).json() == {"dag_id": "etl-pipeline", "is_active": False}
    assert dag_state(cli, "etl-pipeline")["is_active"] is False


@pytest.mark.parametrize("command", ["pause", "unpause", "delete"])
def test_pause_or_delete_of_an_unknown_dag_is_one_line_404(cli, command):
    line = failed(cli(command, "no-such-dag"))
    assert line == "flowforge: 404 not found: no DAG with id 'no-such-dag'"
    assert ok(cli("dags")).out.startswith("no DAGs")  # nothing was made on the way


def test_pause_and_delete_need_their_roles(api_url):
    """An operator may pause but not delete; a viewer neither: one line naming the role."""
    ensure_roles()
    users = get_user_model().objects
    tokens = {}
    for role in ("viewer", "operator"):
        user = users.create(username=f"cli-{role}")
        user.groups.add(user.groups.model.objects.get(name=role))
        tokens[role] = Token.objects.create(user=user).key

    def as_role(role: str, *args: str) -> Result:
        return flowforge(*args, "--api-url", api_url, "--token", tokens[role])

    viewer = failed(as_role("viewer", "pause", "etl-pipeline"))
    assert viewer.startswith("flowforge: 403 forbidden:") and "dags.pause_dag" in viewer
    assert viewer.endswith("ask an admin for the operator or admin role")
    operator = failed(as_role("operator", "delete", "etl-pipeline"))
    assert operator.startswith("flowforge: 403 forbidden:") and "dags.submit_dag" in operator
    assert operator.endswith("ask an admin for the admin role")
    assert failed(as_role("operator", "pause", "etl-pipeline")).startswith("flowforge: 404")


# --- pools ----------------------------------------------------------------------------


def test_pool_creates_and_resizes_and_pools_lists_them(cli):
    assert ok(cli("pools")).out.startswith("no pools")
    created = ok(cli("pool", "db", "--slots", "2", "--description", "the warehouse")).out
    assert created == "pool db created: 2 slots, 0 running\n"
    assert ok(cli("pool", "db", "--slots", "3")).out == "pool db updated: 3 slots, 0 running\n"
    answer = ok(cli("pool", "api", "--slots", "0", "--json")).json()
    assert (answer["name"], answer["slots"], answer["outcome"]) == ("api", 0, "created")

    rows = [line.split() for line in ok(cli("pools")).out.splitlines()]
    assert rows == [
        ["NAME", "SLOTS", "RUNNING", "DESCRIPTION"],
        ["api", "0", "0", "-"],
        ["db", "3", "0", "the", "warehouse"],
    ]
    page = ok(cli("pools", "--json")).json()
    assert [(p["name"], p["description"]) for p in page["results"]] == [
        ("api", ""),
        ("db", "the warehouse"),
    ]
    line = failed(cli("pool", "Bad Name", "--slots", "1"))
    assert line.startswith("flowforge: 400 bad request: pool name 'Bad Name' must match")


# --- system views ---------------------------------------------------------------------


def test_status_and_workers_show_the_session_worker(cli, worker):
    status = ok(cli("status")).out
    assert "workers alive:" in status and "runs:" in status
    assert set(ok(cli("status", "--json")).json()) >= {"dags", "runs", "tasks", "workers_alive"}

    def listed() -> list[str]:  # the flush after each test removes heartbeats; wait for one
        page = ok(cli("workers", "--json")).json()
        return [w["hostname"] for w in page["results"] if w["hostname"].startswith(worker.name)]

    hostname = wait_for(listed, timeout=30, interval=0.5, message="the worker's heartbeat")[0]
    rows = ok(cli("workers")).out.splitlines()
    assert rows[0].split()[:3] == ["HOSTNAME", "PID", "QUEUES"]
    assert any(row.split()[0] == hostname for row in rows[1:])


def test_dlq_lists_a_task_that_always_fails_and_retries_it(cli, tmp_path):
    ok(cli("submit", "-f", write(tmp_path, "fails.yaml", ALWAYS_FAILS)))
    waited = cli("trigger", "always-fails", "--wait")
    run_id = waited.out.split()[1]
    assert failed(waited) == f"flowforge: run {run_id} failed"
    assert "doomed" in waited.out and "failed" in waited.out

    def dead_letters() -> list[dict]:
        return ok(cli("dlq", "--json")).json()["results"]

    entry = wait_for(dead_letters, timeout=30, interval=0.5, message="a dead letter")[0]
    assert (entry["dag_id"], entry["task_id"], entry["run_id"]) == (
        "always-fails",
        "doomed",
        run_id,
    )
    row = ok(cli("dlq")).out.splitlines()[1].split()
    assert row[:4] == [str(entry["id"]), "always-fails", "doomed", run_id]

    retried = ok(cli("dlq-retry", str(entry["id"]))).out
    assert retried.startswith(f"dead letter {entry['id']} retried: run {run_id}")

    def final_again() -> dict | None:  # let the retry finish before the tables are flushed
        run = ok(cli("run", run_id, "--json")).json()
        return run if run["state"] in ("success", "failed", "cancelled") else None

    assert wait_for(final_again, timeout=30, interval=0.5)["state"] == "failed"


# --- options and failures -----------------------------------------------------------


def test_global_options_before_and_after_the_command(api_url, token):
    # `dags`, not `status`: status shows live queue depths and heartbeats that can change
    # between two calls.
    before = flowforge("--api-url", api_url, "--token", token, "dags")
    after = flowforge("dags", "--api-url", api_url, "--token", token)
    assert ok(before).out == ok(after).out
    mixed = flowforge(
        "--api-url", "http://127.0.0.1:1", "--json", "runs", "--api-url", api_url, "--token", token
    )
    assert ok(mixed).json()["results"] == []  # the later --api-url wins
    env = {"FLOWFORGE_API_URL": api_url, "FLOWFORGE_TOKEN": "bad"}
    assert ok(flowforge("dags", "--token", token, env=env)).out == before.out  # flag beats env
    assert "401" in failed(flowforge("status", env=env))  # the env token is used without one


def test_a_bad_token_is_one_line_401(api_url):
    line = failed(flowforge("dags", "--api-url", api_url, "--token", "not-a-token"))
    assert line == "flowforge: 401 unauthorized: Invalid token."
    anonymous = failed(flowforge("dags", "--api-url", api_url))
    assert anonymous.startswith("flowforge: 401 unauthorized:") and "FLOWFORGE_TOKEN" in anonymous


def test_an_unreachable_api_is_named():
    url = f"http://127.0.0.1:{free_port()}"  # free now, so nothing listens on it
    line = failed(flowforge("status", "--api-url", url))
    assert line == f"flowforge: cannot reach the API at {url}"
    bad = failed(flowforge("status", "--api-url", "localhost"))
    assert bad.startswith("flowforge: bad API URL 'localhost'")


def test_unknown_run_and_bad_param_are_one_line(cli):
    assert failed(cli("run", "nope")).startswith("flowforge: 404 not found:")
    assert failed(cli("trigger", "etl-pipeline", "-p", "novalue")) == (
        "flowforge: --param wants KEY=VALUE, got 'novalue'"
    )
    assert failed(cli("trigger", "no-such-dag")).startswith("flowforge: 404 not found:")


def test_submit_of_an_invalid_file_prints_each_error(cli, tmp_path):
    bad = write(tmp_path, "bad.yaml", "id: broken\ntasks:\n  - id: a\n    depend_on: [b]\n")
    result = cli("submit", "--file", bad, "--file", ETL)
    assert result.code == 1 and "Traceback" not in result.err
    errors = result.err.splitlines()
    assert len(errors) >= 2 and all(line.startswith(f"flowforge: {bad}: ") for line in errors[:-1])
    assert "depend_on" in result.err
    assert errors[-1] == "flowforge: 1 of 2 file(s) rejected"
    assert "etl-pipeline: created" in result.out  # the good file still went in


def test_submit_a_folder_and_a_missing_file(cli, tmp_path):
    write(tmp_path, "one.yaml", SLOW)
    write(tmp_path, "two.yml", ALWAYS_FAILS)
    write(tmp_path, "notes.txt", "not a DAG")
    out = ok(cli("submit", "--file", str(tmp_path), "--json")).json()
    assert sorted(dag["dag_id"] for dag in out) == ["always-fails", "slow-one"]
    missing = str(tmp_path / "missing.yaml")
    assert failed(cli("submit", "--file", missing)) == f"flowforge: no such file: {missing}"
