"""The embedded default (SQLite + filesystem broker, no servers) runs etl-pipeline."""

import os
import signal
import sqlite3
import subprocess
import sys

import pytest

from flowforge.testing import ROOT, wait_for

SERVER_SETTINGS = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "FLOWFORGE_QUEUE_PREFIX",
    "FLOWFORGE_TEST_DB_NAME",
    "DJANGO_SETTINGS_MODULE",
)


@pytest.fixture
def embedded_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in SERVER_SETTINGS}
    env["FLOWFORGE_VAR_DIR"] = str(tmp_path / "var")
    return env


def manage(env, *args) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_etl_pipeline_succeeds_on_the_embedded_default(embedded_env, tmp_path):
    manage(embedded_env, "migrate", "--noinput")
    assert "etl-pipeline created" in manage(embedded_env, "submit_dag", "examples/")
    with open(tmp_path / "worker.log", "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "flowforge", "worker", "-c", "2", "-l", "info"],
            cwd=ROOT,
            env=embedded_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        manage(embedded_env, "trigger_dag", "etl-pipeline")
        database = sqlite3.connect(tmp_path / "var" / "flowforge.sqlite3")

        def run_state():
            (state,) = database.execute("SELECT state FROM runs_dagrun").fetchone()
            return state if state in ("success", "failed", "cancelled") else None

        assert wait_for(run_state, timeout=90, interval=0.2, message="etl run") == "success"
        tasks = dict(database.execute("SELECT task_id, state FROM runs_taskinstance"))
        assert tasks == dict.fromkeys(
            ["extract-users", "extract-orders", "transform", "load"], "success"
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    assert b"JSONDecodeError" not in (tmp_path / "worker.log").read_bytes()
