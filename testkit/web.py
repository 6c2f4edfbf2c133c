"""A real web server for tests that drive FlowForge over HTTP: the CLI's and the
dashboard's browser tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import requests

from .engine import ROOT, wait_for


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@contextlib.contextmanager
def serve(db_url: str, workers: int = 2) -> Iterator[str]:
    """gunicorn serving flowforge.wsgi on the database `db_url` (and the broker of this
    process's environment) at a free port; yields its base URL, stops it on exit."""
    env = {**os.environ, "DATABASE_URL": db_url}
    env.pop("FLOWFORGE_TEST_DB_NAME", None)
    url = f"http://127.0.0.1:{free_port()}"
    log = Path(tempfile.mkdtemp(prefix="ffweb-")) / "gunicorn.log"
    command = [sys.executable, "-m", "gunicorn", "flowforge.wsgi"]
    command += ["-b", url.removeprefix("http://"), "-w", str(workers), "--timeout", "60"]
    with open(log, "ab") as out:
        server = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def up() -> bool:
        if server.poll() is not None:
            raise AssertionError(f"gunicorn exited with {server.returncode}:\n{log.read_text()}")
        return healthy(url)

    wait_for(up, timeout=60, interval=0.2, message=f"gunicorn at {url}")
    try:
        yield url
    finally:
        server.send_signal(signal.SIGTERM)  # gunicorn's graceful stop of its workers
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
