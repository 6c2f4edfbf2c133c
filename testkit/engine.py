"""Helpers for tests that drive the real engine: Celery worker processes, the reconciler,
waiting for conditions."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from django.conf import settings

from workflows.executors.process import group_alive as process_group_alive
from workflows.executors.process import process_table

__all__ = ["process_group_alive"]

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


def wait_for(
    condition: Callable[[], T],
    timeout: float = 30,
    interval: float = 0.05,
    message: str = "condition",
) -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def database_url(settings_dict: dict) -> str:
    """A DATABASE_URL naming the database Django is connected to (the test database)."""
    user = settings_dict.get("USER") or "postgres"
    password = settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{password}@" if password else f"{user}@"
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"


def process_env(**variables: str) -> dict[str, str]:
    """This session's environment for a process on the test database, plus `variables`."""
    from django.db import connection

    env = {**os.environ, "DATABASE_URL": database_url(connection.settings_dict), **variables}
    env.pop("FLOWFORGE_TEST_DB_NAME", None)
    return env


def terminate(*processes: subprocess.Popen, timeout: float = 15) -> int:
    """SIGTERM every process, wait for them all and return the first one's exit code; kill
    any still up after `timeout` seconds (so that none holds a connection to the test
    database) and fail naming them."""
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + timeout
    stuck = []
    for process in processes:
        try:
            process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            stuck.append(process.args)
    if stuck:
        raise AssertionError(f"{stuck} still ran {timeout} s after SIGTERM")
    return processes[0].returncode


class WorkerProcess:
    """A real `celery worker` process on this test session's broker and database."""

    def __init__(
        self,
        db_url: str,
        concurrency: int = 2,
        queues: list[str] | None = None,
        name: str = "w1",
        extra_env: dict | None = None,
    ) -> None:
        self.name = f"{name}-{os.getpid()}"
        self.queues = queues or ["default"]
        self.log = Path(tempfile.mkdtemp(prefix="ffworker-")) / f"{self.name}.log"
        self.env = {**os.environ, "DATABASE_URL": db_url, **(extra_env or {})}
        self.env.pop("FLOWFORGE_TEST_DB_NAME", None)
        self.concurrency = concurrency
        self.process: subprocess.Popen | None = None

    @property
    def hostname_prefix(self) -> str:
        """How the worker names itself in TaskInstance.worker: `<name>@<host>`."""
        return f"{self.name}@"

    def start(self, timeout: float = 60) -> WorkerProcess:
        return self.launch().wait_ready(timeout)

    def launch(self) -> WorkerProcess:
        """Start the process without waiting for it to be ready (see wait_ready)."""
        prefix = self.env.get("FLOWFORGE_QUEUE_PREFIX", settings.FLOWFORGE_QUEUE_PREFIX)
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "flowforge",
            "worker",
            "-P",
            "prefork",
            "-c",
            str(self.concurrency),
            "-Q",
            ",".join(prefix + q for q in self.queues),
            "-n",
            f"{self.name}@%h",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "info",
        ]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout: float = 60) -> WorkerProcess:
        wait_for(self._ready, timeout=timeout, interval=0.1, message=f"worker {self.name}")
        return self

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.tail()}")
        return " ready." in self.log.read_text(errors="replace")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def terminate(self) -> None:
        """SIGTERM to the main process only, without waiting: a warm shutdown begins."""
        self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the main process only: a warm shutdown that lets running tasks end."""
        if self.process is None or self.process.poll() is not None:
            return
        self.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill_worker_processes(self) -> None:
        """SIGKILL the worker's main and pool processes only, as `kill -9` of their pids
        would: what they started in sessions of their own (attempts, fences) is left."""
        if self.process is None or self.process.poll() is not None:
            return
        pool = [pid for pid, _s, parent, _g in process_table() or [] if parent == self.process.pid]
        for pid in [self.process.pid, *pool]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(10)

    def kill(self) -> None:
        """SIGKILL the worker and everything it started, as when its host or container dies.

        That is its own process group (the pool) and the process groups of the attempts
        it runs, which are sessions of their own and would outlive a kill of the worker's
        group alone.
        """
        if self.process is None or self.process.poll() is not None:
            return
        groups = {self.process.pid} | {
            _process_group(pid) for pid in descendant_pids(self.process.pid)
        }
        for group in groups - {None}:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        self.process.wait(10)


def descendant_pids(root: int) -> list[int]:
    """Every process below `root`."""
    children: dict[int, list[int]] = {}
    for pid, _state, parent, _group in process_table() or []:
        children.setdefault(parent, []).append(pid)
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _process_group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def reconcile_until(condition: Callable[[], T], timeout: float = 60, message: str = "it") -> T:
    """Run reconciler passes in this process until `condition` holds.

    Tests call the reconciler themselves, rather than through beat, so that a repair
    happens as soon as it is due and the test's time goes to the fault, not to waiting
    for a schedule.
    """
    from workflows.reconciler import reconcile

    def reconciled() -> T:
        reconcile()
        return condition()

    return wait_for(reconciled, timeout=timeout, interval=0.2, message=message)


def submit(yaml_text: str):
    from dags.services import submit_dag

    return submit_dag(yaml_text).dag


def wait_for_run(run_id, timeout: float = 60):
    """The run, once it reached a final state."""
    from runs.models import DagRun
    from runs.states import RunState

    def finished():
        run = DagRun.objects.get(id=run_id)
        return run if run.state in RunState.FINAL else None

    return wait_for(finished, timeout=timeout, message=f"run {run_id} to finish")


def run_dag(yaml_text: str, timeout: float = 60, **trigger_kwargs):
    """Submit, trigger and wait: the finished run and its task instances by task id."""
    from runs.services import trigger_run

    dag = submit(yaml_text)
    run = wait_for_run(trigger_run(dag, **trigger_kwargs).id, timeout)
    return run, {ti.task_id: ti for ti in run.task_instances.all()}
