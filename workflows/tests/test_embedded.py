"""The embedded default (SQLite + filesystem broker, no servers) runs etl-pipeline."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Honcho:
    """`make run`'s processes (Procfile.embedded under honcho), started and stopped with a
    Ctrl-C as a person would."""

    def __init__(self, env: dict, log: Path) -> None:
        self.env, self.log = env, log
        self.process: subprocess.Popen | None = None

    def start(self) -> Honcho:
        port = str(free_port())
        command = [sys.executable, "-m", "honcho", "start", "-f", "Procfile.embedded", "-p", port]
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        wait_for(lambda: " ready." in self.output(), timeout=90, message="the embedded worker")
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def ctrl_c(self) -> float:
        """SIGINT, as the terminal sends on Ctrl-C; returns how long honcho took to stop."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGINT)
        self.process.wait(30)
        return time.monotonic() - started


@pytest.mark.slow
def test_ctrl_c_mid_task_stops_everything_and_the_task_resumes_on_its_try(embedded_env, tmp_path):
    """CONTRACT section 5: Ctrl-C stops make run before honcho would SIGKILL anything, and
    the attempt it stopped runs again after the next start, on the same try, once."""
    marker, effects = tmp_path / "started", tmp_path / "effects"
    (tmp_path / "long.yaml").write_text(
        f"""
id: long
tasks:
  - id: slow
    retries: 0
    command: '[ -e {marker} ] || {{ touch {marker}; sleep 60; }}; echo $FLOWFORGE_TRY_NUMBER >> {effects}'
"""
    )
    env = {**embedded_env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    manage(env, "migrate", "--noinput")
    manage(env, "submit_dag", str(tmp_path / "long.yaml"))
    honcho = Honcho(env, tmp_path / "honcho.log").start()
    manage(env, "trigger_dag", "long")
    wait_for(marker.exists, timeout=60, message="the task to start")

    print(f"make run stopped {honcho.ctrl_c():.1f} s after Ctrl-C, a task running")
    first_run = honcho.output()
    assert "SIGKILL" not in first_run, first_run
    assert "slow try 1 stopped and handed back" in first_run
    database = sqlite3.connect(tmp_path / "var" / "flowforge.sqlite3")
    query = "SELECT state, try_number FROM runs_taskinstance"
    assert database.execute(query).fetchall() == [("queued", 0)]

    honcho.start()  # make run again
    try:
        finished = wait_for(
            lambda: database.execute(query).fetchone() in [("success", 1), ("failed", 1)],
            timeout=90,
            interval=0.2,
            message="the task to run again",
        )
    finally:
        honcho.ctrl_c()
    assert finished and database.execute(query).fetchall() == [("success", 1)]
    assert effects.read_text() == "1\n"  # its side effect, once, by try 1
    assert database.execute("SELECT try_number, state FROM runs_taskattempt").fetchall() == [
        (1, "success")
    ]
    assert "SIGKILL" not in honcho.output()
