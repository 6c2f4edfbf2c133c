"""Worker, beat and web write JSON lines (LOG_FORMAT=json), the engine's with its ids as
keys of their own; LOG_FORMAT=text gives lines for a person. Real processes throughout."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import requests

from flowforge.logs import JsonFormatter
from runs.services import trigger_run
from testkit.engine import ROOT, process_env, submit, terminate, wait_for, wait_for_run
from testkit.web import free_port, healthy

pytestmark = pytest.mark.django_db(transaction=True)

TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) \S+: ")
# gunicorn's own lines (its start, its workers booting) keep gunicorn's format.
GUNICORN_LINE = re.compile(r"\[[^\]]+\] \[\d+\] \[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\] ")


def json_lines(text: str) -> list[dict]:
    """Every line but blank ones, each a JSON object with the four fields every line has."""
    records = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}")
        assert {"timestamp", "level", "logger", "message"} <= record.keys(), line
        assert datetime.fromisoformat(record["timestamp"]).utcoffset() is not None, line
        records.append(record)
    return records


def without_worker_banner(log: str, name: str) -> str:
    """A worker's log less the startup banner Celery prints on stdout, outside logging (so
    not JSON): from its ` -------------- <name>@<host> v5…` line to the end of its [tasks]."""
    lines = log.splitlines()
    (start,) = [n for n, line in enumerate(lines) if line.startswith(f" -------------- {name}@")]
    end = lines.index("[tasks]", start) + 1
    while end < len(lines) and lines[end].startswith("  . "):
        end += 1
    return "\n".join(lines[:start] + lines[end:])


def test_the_formatter_puts_an_engine_lines_ids_beside_time_level_logger_and_message():
    ids = {"run_id": "r1", "dag_id": "d", "task_id": "t", "try_number": 2}  # the `extra`
    record = logging.makeLogRecord(
        {"name": "workflows.dispatch", "levelname": "INFO", "msg": "%s/%s try %s: %s ", **ids}
    )
    record.args = ("d", "t", 2, "ok")
    line = json.loads(JsonFormatter().format(record))
    assert datetime.fromisoformat(line.pop("timestamp")).utcoffset() is not None
    assert line == {
        "level": "INFO",
        "logger": "workflows.dispatch",
        "message": "d/t try 2: ok ",
        **ids,
    }


def test_a_workers_lines_are_json_and_its_engine_lines_carry_the_ids(launch_worker):
    worker = launch_worker("jsonlog", ["json-logs"], {"LOG_FORMAT": "json", "LOG_LEVEL": "INFO"})
    worker.wait_ready()
    dag = submit("id: json-logged\ntasks:\n  - {id: only, command: 'true', queue: json-logs}\n")
    run = wait_for_run(trigger_run(dag).id)
    wait_for(lambda: " succeeded in " in worker.log.read_text(), message="celery's success line")

    records = json_lines(without_worker_banner(worker.log.read_text(), worker.name))
    (engine,) = [r for r in records if r["logger"] == "workflows.dispatch"]
    assert engine["message"] == "json-logged/only try 1: success "
    ids = (engine["run_id"], engine["dag_id"], engine["task_id"], engine["try_number"])
    assert ids == (str(run.id), "json-logged", "only", 1)
    # Celery's own lines come through the same formatter.
    by_logger = {(r["logger"], r["level"]): r["message"] for r in records}
    assert "ready." in by_logger["celery.apps.worker", "INFO"]
    assert "flowforge.execute_task" in by_logger["celery.worker.strategy", "INFO"]  # received
    assert " succeeded in " in by_logger["celery.app.trace", "INFO"]


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_beats_lines_are_json_or_for_a_person(log_format, tmp_path):
    env = process_env(LOG_FORMAT=log_format, LOG_LEVEL="INFO", PYTHONPATH=str(ROOT))
    out, err = tmp_path / "beat.out", tmp_path / "beat.err"  # Celery's banner goes to stdout
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "flowforge", "beat", "-l", "info"],
            cwd=tmp_path,  # beat's own files stay in the test's folder
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        wait_for(lambda: "beat: Starting..." in err.read_text(), 60, message="beat to start")
    finally:
        terminate(beat)

    assert "celery beat v" in out.read_text()
    if log_format == "json":
        (starting,) = [
            r for r in json_lines(err.read_text()) if r["message"] == "beat: Starting..."
        ]
        assert (starting["logger"], starting["level"]) == ("celery.beat", "INFO")
    else:
        lines = [line for line in err.read_text().splitlines() if line.strip()]
        assert all(TEXT_LINE.match(line) for line in lines), lines
        assert any(line.endswith(" INFO celery.beat: beat: Starting...") for line in lines)


@contextlib.contextmanager
def web_process(command: list[str], folder: Path) -> Iterator[str]:
    """`command` (with `{address}`) serving on a free port, LOG_FORMAT=json; yields its URL.
    Its stdout and stderr go to `folder`/web.out and web.err."""
    url = f"http://127.0.0.1:{free_port()}"
    command = [part.format(address=url.removeprefix("http://")) for part in command]
    env = process_env(LOG_FORMAT="json", LOG_LEVEL="INFO", PYTHONUNBUFFERED="1")
    with open(folder / "web.out", "wb") as stdout, open(folder / "web.err", "wb") as stderr:
        server = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=stdout, stderr=stderr, start_new_session=True
        )
    try:
        wait_for(lambda: healthy(url), timeout=60, interval=0.2, message=" ".join(command))
        yield url
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)


def test_djangos_request_lines_under_gunicorn_are_json(tmp_path):
    gunicorn = [sys.executable, "-m", "gunicorn", "flowforge.wsgi", "-b", "{address}", "-w", "1"]
    with web_process(gunicorn, tmp_path) as url:
        assert requests.get(f"{url}/no-such-page", timeout=10).status_code == 404
        err = tmp_path / "web.err"
        wait_for(lambda: "Not Found: /no-such-page" in err.read_text(), message="the 404's line")

    lines = err.read_text().splitlines()
    gunicorns_own = [line for line in lines if GUNICORN_LINE.match(line)]
    assert any("Booting worker" in line for line in gunicorns_own)
    records = json_lines("\n".join(line for line in lines if not GUNICORN_LINE.match(line)))
    (not_found,) = [r for r in records if r["logger"] == "django.request"]
    assert (not_found["level"], not_found["message"]) == ("WARNING", "Not Found: /no-such-page")
    assert not_found["status_code"] == 404


def test_runservers_request_lines_are_json(tmp_path):
    runserver = [sys.executable, "manage.py", "runserver", "{address}", "--noreload"]
    with web_process(runserver, tmp_path) as url:
        assert requests.get(f"{url}/no-such-page", timeout=10).status_code == 404
        err = tmp_path / "web.err"
        wait_for(lambda: "/no-such-page HTTP" in err.read_text(), message="the 404's line")

    records = json_lines(err.read_text())  # runserver's own banner goes to stdout
    (served,) = [r for r in records if r["logger"] == "django.server" and "no-such" in r["message"]]
    assert served["level"] == "WARNING"
    assert served["status_code"] == 404
    assert "request" not in served  # the socket: an object, not data
