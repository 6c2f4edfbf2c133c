"""Executors: shell, python (callable and script) and http attempts, without Django or a DB."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dags.dag_spec import TaskSpec
from workflows.executors import TAIL_CHARS, AttemptContext, ExecutionResult, execute
from workflows.executors.fence import KILL_GRACE_SECS


def make_task(**overrides: Any) -> TaskSpec:
    task: dict[str, Any] = {
        "id": "t1",
        "name": "t1",
        "type": "shell",
        "command": None,
        "script": None,
        "callable": None,
        "method": "GET",
        "url": None,
        "headers": {},
        "body": None,
        "json": None,
        "expect_status": None,
        "depends_on": (),
        "retries": 0,
        "retry_delay_secs": 1,
        "retry_max_delay_secs": 60,
        "backoff": "exponential",
        "timeout_secs": 30,
        "env": {},
        "queue": "default",
        "trigger_rule": "all_success",
    }
    task.update(overrides)
    return TaskSpec(**task)


def run_task(params: dict | None = None, upstream: dict | None = None, **task: object):
    ctx = AttemptContext(
        task=make_task(**task), params=params or {}, upstream_outputs=upstream or {}
    )
    return execute(ctx)


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A killed orphan stays a zombie until PID 1 reaps it, and some container inits never
    # do; a zombie runs nothing, so it counts as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def assert_gone_soon(pid: int, within_secs: float = 5.0) -> None:
    deadline = time.monotonic() + within_secs
    while not process_gone(pid):
        assert time.monotonic() < deadline, f"process {pid} still running"
        time.sleep(0.02)


def read_pid(path: Path) -> int:
    return int(path.read_text().split()[0])


# --- shell -----------------------------------------------------------------------------


def test_shell_success_captures_stdout() -> None:
    result = run_task(command="echo hello")
    assert isinstance(result.pgid, int)  # the attempt's own process group
    assert result == ExecutionResult(
        succeeded=True, exit_code=0, stdout="hello\n", pgid=result.pgid
    )


def test_shell_nonzero_exit_fails_with_code_and_stderr() -> None:
    result = run_task(command="echo partial; echo 'disk full' >&2; exit 3")
    assert not result.succeeded
    assert result.exit_code == 3
    assert result.error == "command exited with status 3"
    assert result.stdout == "partial\n"
    assert result.stderr == "disk full\n"


def test_shell_killed_by_signal_names_it() -> None:
    result = run_task(command="kill -9 $$")
    assert result.exit_code == -signal.SIGKILL
    assert result.error == "command was killed by SIGKILL"


def test_shell_sees_task_env_and_attempt_variables() -> None:
    ctx = AttemptContext(
        task=make_task(
            id="load", command='echo "$GREETING|$FLOWFORGE_PARAMS"', env={"GREETING": "hi"}
        ),
        params={"day": "2024-01-01"},
        upstream_outputs={},
        run_id="run-7",
        try_number=2,
    )
    result = execute(ctx)
    greeting, params = result.stdout.strip().split("|")
    assert greeting == "hi"
    assert json.loads(params) == {"day": "2024-01-01"}

    ids = execute(
        AttemptContext(
            task=make_task(
                id="load", command="echo $FLOWFORGE_RUN_ID $FLOWFORGE_TASK_ID $FLOWFORGE_TRY_NUMBER"
            ),
            params={},
            upstream_outputs={},
            run_id="run-7",
            try_number=2,
        )
    )
    assert ids.stdout == "run-7 load 2\n"


@pytest.mark.parametrize(
    "command",
    [
        "sleep 600 & echo $! > {pidfile}; wait",
        "sh -c 'echo $$ > {pidfile}; sleep 600; echo never'",
    ],
    ids=["background-child", "nested-shell"],
)
def test_shell_timeout_kills_the_whole_group(tmp_path: Path, command: str) -> None:
    pidfile = tmp_path / "child.pid"
    started = time.monotonic()
    result = run_task(command=command.format(pidfile=pidfile), timeout_secs=0.5)
    assert time.monotonic() - started < 5
    assert result.timed_out and not result.succeeded
    assert result.error == "timed out after 0.5 s"
    assert_gone_soon(read_pid(pidfile))


def test_a_timeout_fires_at_its_time_not_after_the_kill_grace() -> None:
    """The group dies at once on SIGTERM (sh, then its child): the attempt ends at its
    timeout. Orphaned zombies waiting for init do not count as alive (they once made
    every timeout wait out the whole kill grace)."""
    started = time.monotonic()
    result = run_task(command="sleep 30; echo never", timeout_secs=1)
    assert result.timed_out
    assert time.monotonic() - started < 1 + KILL_GRACE_SECS / 2


def test_shell_timeout_escalates_to_sigkill_for_a_child_ignoring_sigterm(tmp_path: Path) -> None:
    pidfile = tmp_path / "stubborn.pid"
    command = f"sh -c 'trap \"\" TERM; echo $$ > {pidfile}; while true; do sleep 0.1; done'"
    result = run_task(command=command, timeout_secs=0.5)
    assert result.timed_out
    assert_gone_soon(read_pid(pidfile))


def test_cancel_stops_the_group_within_seconds(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"

    def child_started() -> bool:
        return pidfile.exists() and pidfile.read_text().strip() != ""

    ctx = AttemptContext(
        task=make_task(command=f"sleep 600 & echo $! > {pidfile}; wait", timeout_secs=3600),
        params={},
        upstream_outputs={},
        should_cancel=child_started,
    )
    started = time.monotonic()
    result = execute(ctx)
    assert time.monotonic() - started < 5
    assert result.cancelled and not result.succeeded and not result.timed_out
    assert result.error == "cancelled"
    assert_gone_soon(read_pid(pidfile))


def test_background_child_does_not_outlive_a_finished_attempt(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    started = time.monotonic()
    result = run_task(command=f"sleep 600 & echo $! > {pidfile}")
    assert time.monotonic() - started < 5
    assert result.succeeded
    assert_gone_soon(read_pid(pidfile))


def test_large_output_keeps_only_the_tail() -> None:
    command = "head -c 5000000 /dev/zero | tr '\\0' x; echo END; head -c 3000000 /dev/zero | tr '\\0' y >&2"
    result = run_task(command=command)
    assert result.succeeded
    assert len(result.stdout) == TAIL_CHARS
    assert result.stdout.endswith("x" * 100 + "END\n")
    assert result.stderr == "y" * TAIL_CHARS


def test_huge_output_does_not_grow_memory() -> None:
    before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = run_task(command="head -c 100000000 /dev/zero | tr '\\0' z")
    after_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert result.succeeded and result.stdout == "z" * TAIL_CHARS
    assert after_kib - before_kib < 30_000


def test_invalid_utf8_output_is_replaced_not_fatal() -> None:
    result = run_task(command="printf 'ok \\377\\n'")
    assert result.succeeded
    assert result.stdout == "ok \ufffd\n"


# --- dispatcher ------------------------------------------------------------------------


def test_unknown_task_type_is_a_failed_attempt() -> None:
    result = run_task(type="ftp")
    assert not result.succeeded
    assert "unknown task type 'ftp'" in result.error


def test_an_executor_crash_becomes_a_failed_attempt() -> None:
    ctx = AttemptContext(
        task=make_task(type="python", callable="workflows.tests.callables:noop"),
        params=None,  # type: ignore[arg-type]
        upstream_outputs={},
    )
    result = execute(ctx)
    assert not result.succeeded
    assert result.error.startswith("python executor failed: ")  # params=None breaks it
    assert "Traceback" in result.stderr


# --- python callable -------------------------------------------------------------------

CALLABLES = "workflows.tests.callables"


def run_callable(name: str, params: dict | None = None, upstream: dict | None = None, **task):
    return run_task(params, upstream, type="python", callable=f"{CALLABLES}:{name}", **task)


def test_callable_gets_params_and_returns_output() -> None:
    result = run_callable("add", {"x": 2, "y": 3})
    assert result == ExecutionResult(succeeded=True, output=5)


def test_callable_gets_upstream_outputs_under_sanitized_ids() -> None:
    result = run_callable(
        "combine_with_upstream",
        params={"factor": 3, "unused": True},
        upstream={"load-v1.2": {"rows": 7}, "other": None},
    )
    assert result.succeeded, result.error
    assert result.output == {"total": 21}


def test_callable_with_kwargs_gets_everything() -> None:
    result = run_callable("takes_everything", {"day": "d"}, {"extract-a": [1]})
    assert result.output == {"day": "d", "extract_a": [1]}


def test_callable_gets_only_the_names_it_accepts() -> None:
    result = run_callable("takes_only_day", {"day": "mon", "region": "eu"}, {"up": 1})
    assert result.output == "mon"


def test_callable_prints_are_captured() -> None:
    result = run_callable("noisy")
    assert result.succeeded
    assert result.stdout == "to stdout\n"
    assert result.stderr == "to stderr\n"


def test_callable_exception_fails_with_type_message_and_traceback() -> None:
    result = run_callable("fail")
    assert not result.succeeded
    assert result.error == "ValueError: bad input"
    assert "Traceback" in result.stderr
    assert "in fail" in result.stderr
    assert "_time_limit" not in result.stderr


def test_callable_sys_exit_is_a_failed_attempt() -> None:
    result = run_callable("exits")
    assert not result.succeeded
    assert result.error == "SystemExit: 4"


def test_callable_non_json_return_fails() -> None:
    result = run_callable("returns_a_set")
    assert not result.succeeded
    assert "not JSON-serializable" in result.error
    assert result.output is None


@pytest.mark.parametrize("name", ["spin", "spin_swallowing_exceptions"])
def test_callable_timeout_interrupts_a_loop_and_restores_the_alarm(name: str) -> None:
    handler_before = signal.getsignal(signal.SIGALRM)
    timer_before, _ = signal.getitimer(signal.ITIMER_REAL)
    started = time.monotonic()
    result = run_callable(name, timeout_secs=0.3)
    assert time.monotonic() - started < 3
    assert result.timed_out and not result.succeeded
    assert result.error == "timed out after 0.3 s"
    assert signal.getsignal(signal.SIGALRM) is handler_before
    timer_after, _ = signal.getitimer(signal.ITIMER_REAL)
    assert (timer_after > 0) == (timer_before > 0)


def test_a_timeout_python_drops_fires_again_until_the_callable_stops(monkeypatch) -> None:
    dropped: list = []
    monkeypatch.setattr(sys, "unraisablehook", dropped.append)
    started = time.monotonic()
    result = run_callable("finalizer_then_sleep", timeout_secs=0.3)
    # The alarms at 0.3 s and every 0.5 s after land in the finalizer, until 2.5 s.
    assert result.timed_out and not result.succeeded, result
    assert time.monotonic() - started < 10
    assert {type(d.exc_value).__name__ for d in dropped} == {"CallableTimeout"}


def test_callable_off_the_main_thread_runs_without_alarm() -> None:
    results: list[ExecutionResult] = []
    worker = threading.Thread(target=lambda: results.append(run_callable("add", {"x": 1, "y": 1})))
    worker.start()
    worker.join(10)
    assert results == [ExecutionResult(succeeded=True, output=2)]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "workflows.tests.no_such_module:f",
            "cannot import module 'workflows.tests.no_such_module'",
        ),
        (f"{CALLABLES}:missing", "has no attribute 'missing'"),
        (f"{CALLABLES}:not_a_function", "not a function"),
        ("no_colon_here", "must look like 'package.module:function'"),
    ],
)
def test_bad_callable_is_a_clear_failure(spec: str, expected: str) -> None:
    result = run_task(type="python", callable=spec)
    assert not result.succeeded
    assert expected in result.error
    assert spec in result.error


def test_noop_callable_overhead_is_well_under_a_millisecond() -> None:
    ctx = AttemptContext(
        task=make_task(type="python", callable=f"{CALLABLES}:noop", timeout_secs=3600),
        params={"a": 1},
        upstream_outputs={"up": 2},
    )
    execute(ctx)
    runs = 500
    started = time.perf_counter()
    for _ in range(runs):
        execute(ctx)
    per_call = (time.perf_counter() - started) / runs
    assert per_call < 0.0005, f"{per_call * 1e6:.0f} us per call"


# --- python script ---------------------------------------------------------------------


def test_script_runs_in_its_folder_with_upstream_outputs(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(
        "import json, os\n"
        "print(os.getcwd())\n"
        "print(json.loads(os.environ['FLOWFORGE_UPSTREAM'])['extract']['rows'])\n"
        "print(json.loads(os.environ['FLOWFORGE_PARAMS'])['day'])\n"
    )
    result = run_task({"day": "tue"}, {"extract": {"rows": 9}}, type="python", script=str(script))
    assert result.succeeded, result.stderr
    assert result.stdout.splitlines() == [str(tmp_path), "9", "tue"]


def test_script_failure_reports_status_and_traceback(tmp_path: Path) -> None:
    script = tmp_path / "broken.py"
    script.write_text("raise RuntimeError('no input file')\n")
    result = run_task(type="python", script=str(script))
    assert not result.succeeded
    assert result.exit_code == 1
    assert result.error == "script exited with status 1"
    assert "RuntimeError: no input file" in result.stderr


def test_script_relative_to_the_dags_folder_imports_from_it(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("GREETING = 'relative ok'\n")
    (tmp_path / "rel.py").write_text("import helpers\nprint(helpers.GREETING)\n")
    ctx = AttemptContext(
        task=make_task(type="python", script="rel.py"),
        params={},
        upstream_outputs={},
        dags_folder=str(tmp_path),
    )
    result = execute(ctx)
    assert result.stdout == "relative ok\n", result.stderr


def test_callable_is_imported_from_the_dags_folder(tmp_path: Path) -> None:
    (tmp_path / "dag_code_7f3a.py").write_text("def double(n):\n    return 2 * n\n")
    ctx = AttemptContext(
        task=make_task(type="python", callable="dag_code_7f3a:double"),
        params={"n": 21},
        upstream_outputs={},
        dags_folder=str(tmp_path),
    )
    result = execute(ctx)
    assert (result.succeeded, result.output) == (True, 42), result.error
    assert sys.path[-1] == str(tmp_path)  # last: DAG code never shadows an installed module


def test_missing_script_is_a_failed_attempt(tmp_path: Path) -> None:
    missing = tmp_path / "nope.py"
    result = run_task(type="python", script=str(missing))
    assert not result.succeeded
    assert result.error == f"script not found: {missing}"
    relative = execute(
        AttemptContext(
            task=make_task(type="python", script="nope.py"),
            params={},
            upstream_outputs={},
            dags_folder=str(tmp_path),
        )
    )
    assert relative.error == f"script not found: {missing} (relative to the DAGs folder)"


def test_script_timeout(tmp_path: Path) -> None:
    script = tmp_path / "slow.py"
    script.write_text("import time\nprint('starting')\ntime.sleep(600)\n")
    result = run_task(type="python", script=str(script), timeout_secs=0.5)
    assert result.timed_out
    assert result.stdout == "starting\n"


# --- http ------------------------------------------------------------------------------


class RecordingHandler(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_GET(self) -> None:
        routes = {
            "/json": (200, "application/json", b'{"ok": true, "items": [1, 2]}'),
            "/text": (200, "text/plain; charset=utf-8", b"plain body"),
            "/fail": (500, "text/plain", b"boom"),
            "/moved": (302, "text/plain", b""),
            "/missing": (404, "text/plain", b"not here"),
        }
        status, content_type, body = routes.get(self.path, (404, "text/plain", b""))
        if self.path == "/slow":
            time.sleep(3)
        self.respond(status, content_type, body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        payload = self.rfile.read(length)
        self.received.append(
            {
                "path": self.path,
                "body": payload.decode(),
                "content_type": self.headers.get("Content-Type"),
                "token": self.headers.get("X-Token"),
            }
        )
        self.respond(201, "application/json", payload or b"null")

    def respond(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/fail")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server_url() -> Iterator[str]:
    RecordingHandler.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), RecordingHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_2xx_parses_json_body(server_url: str) -> None:
    result = run_task(type="http", url=f"{server_url}/json")
    assert result.succeeded, result.error
    assert result.output == {"status_code": 200, "body": {"ok": True, "items": [1, 2]}}
    assert json.loads(result.stdout) == {"ok": True, "items": [1, 2]}


def test_http_text_body_is_kept_as_text(server_url: str) -> None:
    result = run_task(type="http", url=f"{server_url}/text")
    assert result.output == {"status_code": 200, "body": "plain body"}


def test_http_unexpected_status_fails(server_url: str) -> None:
    url = f"{server_url}/fail"
    result = run_task(type="http", url=url)
    assert not result.succeeded
    assert result.error == f"HTTP 500 from {url} (expected 2xx)"
    assert result.output == {"status_code": 500, "body": "boom"}


def test_http_error_after_a_redirect_names_the_final_url_too(server_url: str) -> None:
    result = run_task(type="http", url=f"{server_url}/moved")
    assert result.error == (
        f"HTTP 500 from {server_url}/fail (redirected from {server_url}/moved) (expected 2xx)"
    )


def test_http_expect_status_accepts_listed_codes(server_url: str) -> None:
    url = f"{server_url}/missing"
    assert run_task(type="http", url=url, expect_status=(404,)).succeeded
    result = run_task(type="http", url=f"{server_url}/json", expect_status=(201, 202))
    assert result.error == f"HTTP 200 from {server_url}/json (expected 201, 202)"


def test_http_post_json_body_arrives(server_url: str) -> None:
    result = run_task(
        type="http",
        method="POST",
        url=f"{server_url}/ingest",
        headers={"X-Token": "s3cret"},
        json={"rows": [1, 2, 3]},
    )
    assert result.succeeded, result.error
    assert result.output == {"status_code": 201, "body": {"rows": [1, 2, 3]}}
    [received] = RecordingHandler.received
    assert json.loads(received["body"]) == {"rows": [1, 2, 3]}
    assert received["content_type"] == "application/json"
    assert received["token"] == "s3cret"


def test_http_raw_body_is_sent_as_is(server_url: str) -> None:
    run_task(type="http", method="post", url=f"{server_url}/raw", body="a=1&b=2")
    assert RecordingHandler.received[0]["body"] == "a=1&b=2"


def test_http_timeout_fails_cleanly(server_url: str) -> None:
    result = run_task(type="http", url=f"{server_url}/slow", timeout_secs=0.3)
    assert result.timed_out and not result.succeeded
    assert result.error == "timed out after 0.3 s"


def test_http_connection_refused_fails_cleanly() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    result = run_task(type="http", url=url)
    assert not result.succeeded
    assert result.error == f"connection refused: {url}"


def test_http_invalid_url_fails_cleanly() -> None:
    result = run_task(type="http", url="not a url")
    assert not result.succeeded
    assert "not a url" in result.error
