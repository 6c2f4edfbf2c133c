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
import requests

from testkit.engine import ROOT, wait_for

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


class MakeRun:
    """`make run` (Procfile.embedded under honcho), started, and stopped with Ctrl-C as a
    terminal sends it: SIGINT to the foreground process group, make and honcho."""

    def __init__(self, env: dict, log: Path) -> None:
        self.env, self.log = env, log
        self.process: subprocess.Popen | None = None

    def start(self) -> MakeRun:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                ["make", "run"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's foreground group of its own
            )
        wait_for(self.worker_ready, timeout=120, message="make run's worker")
        return self

    def worker_ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(
                f"make run exited with {self.process.returncode}:\n{self.output()}"
            )
        return self.output().count(" ready.") > getattr(self, "_seen", 0)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def ctrl_c(self) -> float:
        """Returns how long make run took to stop."""
        self._seen = self.output().count(" ready.")
        started = time.monotonic()
        os.killpg(self.process.pid, signal.SIGINT)
        self.process.wait(30)
        return time.monotonic() - started


def test_make_run_serves_on_port_8000_by_default():
    """honcho numbers its processes' PORT from 5000 unless told: the web process of
    make run must get 8000, the CLI's default and the README's."""
    dry_run = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True)
    honcho = [line for line in dry_run.stdout.splitlines() if "honcho start" in line]
    assert len(honcho) == 1 and "-p 8000" in honcho[0], dry_run.stdout
    assert "${PORT:-8000}" in (ROOT / "Procfile.embedded").read_text()


@pytest.mark.slow
def test_ctrl_c_mid_task_stops_everything_and_the_task_resumes_on_its_try(embedded_env, tmp_path):
    """CONTRACT section 5: make run serves the styled admin on its port; Ctrl-C stops every
    process before honcho would SIGKILL any; the attempt it stopped runs again after the
    next make run, on the same try, once."""
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
    port = free_port()
    env = {**embedded_env, "PORT": str(port)}
    manage(env, "migrate", "--noinput")
    manage(env, "submit_dag", str(tmp_path / "long.yaml"))
    run = MakeRun(env, tmp_path / "make-run.log").start()
    login = requests.get(f"http://127.0.0.1:{port}/admin/login/", timeout=10)
    css = requests.get(f"http://127.0.0.1:{port}/static/admin/css/base.css", timeout=10)
    assert (login.status_code, css.status_code) == (200, 200)
    assert css.headers["Content-Type"].startswith("text/css")
    manage(env, "trigger_dag", "long")
    wait_for(marker.exists, timeout=60, message="the task to start")

    print(f"make run stopped {run.ctrl_c():.1f} s after Ctrl-C, a task running")
    first_run = run.output()
    assert "SIGKILL" not in first_run, first_run
    assert "slow try 1 stopped and handed back" in first_run
    database = sqlite3.connect(tmp_path / "var" / "flowforge.sqlite3")
    query = "SELECT state, try_number FROM runs_taskinstance WHERE task_id = 'slow'"
    assert database.execute(query).fetchall() == [("queued", 0)]

    run.start()  # make run again
    try:
        finished = wait_for(
            lambda: database.execute(query).fetchone() in [("success", 1), ("failed", 1)],
            timeout=90,
            interval=0.2,
            message="the task to run again",
        )
    finally:
        run.ctrl_c()
    assert finished and database.execute(query).fetchall() == [("success", 1)]
    assert effects.read_text() == "1\n"  # its side effect, once, by try 1
    attempts = (
        "SELECT a.try_number, a.state FROM runs_taskattempt a"
        " JOIN runs_taskinstance i ON i.id = a.task_instance_id WHERE i.task_id = 'slow'"
    )
    assert database.execute(attempts).fetchall() == [(1, "success")]
    assert "SIGKILL" not in run.output()
