"""The processes a benchmark starts and stops: Celery workers and gunicorn.

Each runs in its own session (process group). Stopping sends SIGTERM to the main process
only (a prefork parent signalled as a group can hang in billiard's pool shutdown) and
SIGKILLs the whole group if it is still there after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from testkit.engine import descendant_pids, wait_for

from .services import BenchEnv

ROOT = Path(__file__).resolve().parent.parent
STOP_GRACE_SECS = 30


class Service:
    """A child process in its own session, logging to a file under the bench's workdir."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.command, self.env, self.log = name, command, env, log
        self.process: subprocess.Popen | None = None

    def launch(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")

    def pids(self) -> list[int]:
        """The main process and everything below it (pool processes, attempts)."""
        if not self.alive():
            return []
        return [self.process.pid, *descendant_pids(self.process.pid)]

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = STOP_GRACE_SECS) -> None:
        if not self.alive():
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


class Worker(Service):
    """`celery worker` (prefork) on the bench's broker and database, raw tasks included."""

    def __init__(
        self, env: BenchEnv, concurrency: int, name: str = "bench", queues: tuple = ("default",)
    ) -> None:
        self.concurrency = concurrency
        hostname = f"{name}-{os.getpid()}@%h"
        command = [
            sys.executable, "-m", "celery", "-A", "flowforge", "worker",
            "-P", "prefork", "-c", str(concurrency),
            "-Q", ",".join(env.queue(queue) for queue in queues),
            "-n", hostname, "--without-gossip", "--without-mingle",
            "--include", "bench.raw_tasks", "-l", "info",
        ]  # fmt: skip
        log = env.workdir / f"worker-{name}-{time.monotonic_ns()}.log"
        super().__init__(f"worker {name}", command, env.process_env(), log)

    def start(self, timeout: float = 60) -> Worker:
        self.launch()
        wait_for(self._ready, timeout=timeout, interval=0.05, message=self.name)
        return self

    def _ready(self) -> bool:
        self.check_alive()
        return " ready." in self.log.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gunicorn(Service):
    """The API under gunicorn (sync workers), on a free loopback port."""

    def __init__(self, env: BenchEnv, workers: int = 2, **overrides: str) -> None:
        self.port = free_port()
        command = [
            sys.executable, "-m", "gunicorn", "flowforge.wsgi:application",
            "--workers", str(workers), "--bind", f"127.0.0.1:{self.port}",
            "--log-level", "warning",
        ]  # fmt: skip
        log = env.workdir / f"gunicorn-{time.monotonic_ns()}.log"
        super().__init__("gunicorn", command, env.process_env(**overrides), log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> Gunicorn:
        self.launch()
        wait_for(self._ready, timeout=timeout, interval=0.1, message=self.name)
        return self

    def _ready(self) -> bool:
        self.check_alive()
        try:
            return requests.get(f"{self.url}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False


@contextlib.contextmanager
def running(*services: Service):
    """Stop the given (started) services however the block ends."""
    try:
        yield services
    finally:
        for service in services:
            service.stop()


def api_token(env: BenchEnv, username: str = "bench", role: str = "admin") -> str:
    """`manage.py api_token USER --role ROLE`: the token the HTTP benchmarks send."""
    output = subprocess.run(
        [sys.executable, "manage.py", "api_token", username, "--role", role],
        cwd=ROOT,
        env=env.process_env(),
        check=True,
        capture_output=True,
        text=True,
    )
    return output.stdout.strip().splitlines()[-1]
