"""PostgreSQL restarted in the middle of a run: workers wait for it and the run completes.

The machine's PostgreSQL serves other test sessions, so this test starts a private
cluster (initdb into a temporary folder, on a free port) and runs the whole system on it
the way an operator would: migrate, submit_dag, a worker, beat (which runs the reconciler
from the schedule the migration created) and trigger_dag, each a process of its own.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import pytest
from django.conf import settings

from testkit.engine import ROOT, WorkerProcess, process_group_alive, terminate, wait_for

pytestmark = [pytest.mark.chaos]

PG_BINARIES = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))


class PrivatePostgres:
    """A throwaway PostgreSQL cluster in a temporary folder, run as the postgres user."""

    def __init__(self) -> None:
        self.bin = PG_BINARIES[-1].parent
        self.root = Path(tempfile.mkdtemp(prefix="ffpg-"))
        self.data = self.root / "data"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]

    def url(self, database: str = "flowforge") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def create(self) -> PrivatePostgres:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync")
        self.start()
        conn = psycopg2.connect(self.url("postgres"))
        try:
            conn.autocommit = True
            conn.cursor().execute("CREATE DATABASE flowforge")
        finally:
            conn.close()
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", self.data, "-l", self.root / "log", "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def query(self, sql: str, *params) -> list[tuple]:
        with psycopg2.connect(self.url(), connect_timeout=2) as conn:
            cursor = conn.cursor()
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        conn.close()
        return rows

    def _run(self, program: str, *args) -> None:
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        argv = [*as_postgres, str(self.bin / program), *map(str, args)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{program}: {done.stdout}{done.stderr}"


@pytest.fixture
def private_postgres():
    if not PG_BINARIES:
        pytest.skip("needs the PostgreSQL server binaries (initdb) to start a private cluster")
    cluster = PrivatePostgres()
    try:
        yield cluster.create()
    finally:
        cluster.destroy()


def manage(env: dict, *args: str) -> str:
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


def effect(log: Path) -> str:
    return f'echo \\"$FLOWFORGE_RUN_ID $FLOWFORGE_TASK_ID $FLOWFORGE_TRY_NUMBER\\" >> {log}'


def fan_out_dag(log: Path, width: int) -> str:
    """root -> `width` short tasks -> join: claims and completions all through the outage."""
    lines = ["id: restarted", "tasks:", "  - id: root", f'    command: "{effect(log)}"']
    for n in range(width):
        lines += [f"  - id: t{n}", f'    command: "sleep 0.2; {effect(log)}"']
        lines.append("    depends_on: [root]")
    lines += ["  - id: join", f'    command: "{effect(log)}"']
    lines.append(f"    depends_on: [{', '.join(f't{n}' for n in range(width))}]")
    return "\n".join(lines) + "\n"


def test_postgres_restart_mid_run_the_run_completes(private_postgres, tmp_path):
    pg = private_postgres
    env = {
        **os.environ,
        "DATABASE_URL": pg.url(),
        # Queues of their own, so the session's other workers never take these messages.
        "FLOWFORGE_QUEUE_PREFIX": settings.FLOWFORGE_QUEUE_PREFIX + "pg.",
        # Read by the migration that schedules the reconciler, and by beat.
        "FLOWFORGE_RECONCILE_SECS": "1",
        "FLOWFORGE_REQUEUE_AFTER_SECS": "3",
    }
    env.pop("FLOWFORGE_TEST_DB_NAME", None)
    log = tmp_path / "effects"
    (tmp_path / "restarted.yaml").write_text(fan_out_dag(log, 20))

    manage(env, "migrate", "--noinput")
    manage(env, "submit_dag", str(tmp_path / "restarted.yaml"))
    worker = WorkerProcess(pg.url(), 2, ["default"], "pgworker", env).launch()
    beat_log = tmp_path / "beat.log"
    with open(beat_log, "wb") as out:
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "flowforge", "beat", "-l", "info"],
            cwd=tmp_path,  # beat's files stay in the test's folder
            env={**env, "PYTHONPATH": str(ROOT)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        worker.wait_ready()
        run_id = re.search(r"run (\S+) ", manage(env, "trigger_dag", "restarted"))[1]

        def succeeded() -> int:
            return pg.query(
                "SELECT count(*) FROM runs_taskinstance WHERE run_id = %s AND state = 'success'",
                run_id,
            )[0][0]

        wait_for(lambda: succeeded() >= 3, 60, interval=0.1, message="3 tasks done")
        pg.stop("fast")  # ends every connection: claims, completions and leases fail
        wait_for(
            lambda: (
                "database unavailable" in worker.tail(200) and "retrying in 1 s" in worker.tail(200)
            ),
            30,
            interval=0.1,
            message="the worker to wait through two failed tries",
        )
        pg.start()

        def final_state() -> str | None:
            try:
                (state,) = pg.query("SELECT state FROM runs_dagrun WHERE id = %s", run_id)[0]
            except psycopg2.OperationalError:
                return None
            return state if state in ("success", "failed", "cancelled") else None

        assert wait_for(final_state, 90, interval=0.2, message="the run to finish") == "success"
        states = dict(pg.query("SELECT task_id, state FROM runs_taskinstance"))
        tries = dict(pg.query("SELECT task_id, try_number FROM runs_taskinstance"))
        assert worker.process.poll() is None and beat.poll() is None  # both rode it out
    finally:
        terminate(beat)
        worker.stop(timeout=15)
    assert set(states.values()) == {"success"}
    lines = Counter(log.read_text().splitlines())
    assert lines == Counter(f"{run_id} {task_id} {tries[task_id]}" for task_id in states)
    # The reconciler ran from the beat entry the migration made.
    assert "flowforge.reconcile" in worker.log.read_text()


@pytest.mark.django_db
def test_a_database_outage_is_waited_out_then_given_up_on(settings):
    from django.db import OperationalError

    from workflows.attempts import wait_for_database

    outcomes = [OperationalError("server closed the connection"), OperationalError("refused")]

    def flaky_query() -> str:
        if outcomes:
            raise outcomes.pop(0)
        return "answered"

    assert wait_for_database(flaky_query) == "answered"

    settings.FLOWFORGE_DB_WAIT_SECS = 0.5

    def dead_query() -> None:
        raise OperationalError("refused")

    with pytest.raises(OperationalError):  # the message is then sent again (tasks.py)
        wait_for_database(dead_query)


def test_an_attempt_that_cannot_renew_its_lease_stops_before_it_could_be_retried(
    private_postgres, tmp_path
):
    """The database goes away under a running attempt: it cannot renew its 6 s lease, so
    it stops itself a heartbeat (1 s) before the lease ends (the reconciler may call it
    lost from then on), and once the database is back its try is recorded as "lease lost"
    and retried."""
    from workflows.attempts import LEASE_LOST

    pg = private_postgres
    env = {
        **os.environ,
        "DATABASE_URL": pg.url(),
        "FLOWFORGE_QUEUE_PREFIX": settings.FLOWFORGE_QUEUE_PREFIX + "lease.",
        "FLOWFORGE_LEASE_SECS": "6",
        "FLOWFORGE_HEARTBEAT_SECS": "1",
    }
    env.pop("FLOWFORGE_TEST_DB_NAME", None)
    lines = tmp_path / "lines"
    loop = (
        'n=$([ "$FLOWFORGE_TRY_NUMBER" = 1 ] && echo 300 || echo 5); i=0;'
        f" while [ $i -lt $n ]; do echo $FLOWFORGE_TRY_NUMBER >> {lines}; sleep 0.1;"
        " i=$((i+1)); done"
    )
    (tmp_path / "leased.yaml").write_text(
        f"id: leased\ntasks:\n  - id: loop\n    retries: 1\n    retry_delay_secs: 0.1\n"
        f"    command: '{loop}'\n"
    )
    manage(env, "migrate", "--noinput")
    manage(env, "submit_dag", str(tmp_path / "leased.yaml"))
    worker = WorkerProcess(pg.url(), 1, ["default"], "leaseworker", env).start()
    try:
        manage(env, "trigger_dag", "leased")

        def process_group() -> int | None:
            rows = pg.query("SELECT pgid FROM runs_taskinstance WHERE pgid IS NOT NULL")
            return rows[0][0] if rows else None

        group = wait_for(process_group, 30, interval=0.1, message="the attempt's lease renewal")
        ((expires,),) = pg.query("SELECT lease_expires_at FROM runs_taskinstance")
        pg.stop("fast")
        wait_for(lambda: not process_group_alive(group), 15, 0.05, "the attempt to stop itself")
        # Before its lease expired (it may have been renewed after the read: later still).
        assert datetime.now(UTC) < expires
        pg.start()

        def final() -> str | None:
            try:
                (state,) = pg.query("SELECT state FROM runs_dagrun")[0]
            except psycopg2.OperationalError:
                return None
            return state if state in ("success", "failed", "cancelled") else None

        assert wait_for(final, 90, interval=0.2, message="the run to finish") == "success"
        attempts = pg.query("SELECT try_number, state, error FROM runs_taskattempt ORDER BY 1")
        assert attempts == [(1, "up_for_retry", LEASE_LOST), (2, "success", "")]
        written = lines.read_text().splitlines()
        assert written == ["1"] * written.count("1") + ["2"] * 5  # no overlap
    finally:
        worker.stop(timeout=15)
