"""Each task type runs on a real worker and its outcome lands in the database."""

import http.server
import json
import threading

import pytest

from testkit.engine import ROOT, run_dag

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]


def one_task(body: str, dag_id: str = "one", params: str = "{}") -> str:
    return f"id: {dag_id}\nparams: {params}\ntasks:\n  - id: only\n" + "".join(
        f"    {line}\n" for line in body.strip().splitlines()
    )


def test_shell_success_records_output_and_attempt():
    run, tasks = run_dag(one_task("command: echo hello from $FLOWFORGE_TASK_ID"))
    assert run.state == "success"
    only = tasks["only"]
    assert (only.state, only.try_number, only.exit_code) == ("success", 1, 0)
    attempt = only.attempts.get()
    assert attempt.stdout.strip() == "hello from only"
    assert attempt.worker.startswith("w1-")
    assert run.started_at <= only.started_at <= only.finished_at <= run.finished_at
    # Kept once finished, so the wait in the queue (queued_at to started_at) is known.
    assert only.queued_at is not None and run.started_at <= only.queued_at <= only.started_at


def test_the_word_count_example_runs_its_code_from_the_dags_folder():
    """examples/word-count.yaml: callables imported from, and a script run in, the
    workers' DAGs folder (examples/ by default); the DAG names them relatively."""
    run, tasks = run_dag((ROOT / "examples" / "word-count.yaml").read_text())
    assert run.state == "success", {t: ti.error for t, ti in tasks.items()}
    assert tasks["count"].output["dog"] == 2
    assert tasks["rank"].output == [["the", 3], ["dog", 2], ["and", 1]]
    assert tasks["report"].attempts.get().stdout.splitlines()[0] == "1. the: 3"


def test_non_zero_exit_is_recorded_with_code_and_stderr():
    run, tasks = run_dag(one_task("command: echo broken pipe >&2; exit 3"))
    assert run.state == "failed"
    only = tasks["only"]
    assert (only.state, only.exit_code) == ("failed", 3)
    assert "exited with status 3" in only.error
    assert only.attempts.get().stderr.strip() == "broken pipe"


def test_timeout_fails_the_attempt():
    run, tasks = run_dag(one_task("command: sleep 30\ntimeout_secs: 1"))
    assert tasks["only"].state == "failed"
    assert "timed out after 1 s" in tasks["only"].error
    assert tasks["only"].duration < 20


def test_env_and_params_reach_the_command():
    run, tasks = run_dag(
        one_task(
            'command: echo "$GREETING $FLOWFORGE_PARAMS"\nenv:\n  GREETING: hi',
            params="{day: sunday}",
        ),
        params={"day": "monday"},
    )
    assert tasks["only"].attempts.get().stdout.strip() == 'hi {"day": "monday"}'


def test_python_callable_gets_params_and_upstream_output():
    run, tasks = run_dag(
        """
id: py
params: {factor: 3}
tasks:
  - id: produce
    type: python
    callable: workflows.tests.engine_callables:produce_numbers
  - id: consume
    type: python
    callable: workflows.tests.engine_callables:scale_numbers
    depends_on: [produce]
"""
    )
    assert run.state == "success", tasks["consume"].error
    assert tasks["produce"].output == [1, 2, 3]
    assert tasks["consume"].output == [3, 6, 9]


def test_python_script_runs(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(
        "import json, os\nprint(json.loads(os.environ['FLOWFORGE_PARAMS'])['n'] * 2)\n"
    )
    run, tasks = run_dag(
        one_task(f"type: python\nscript: {script}", params="{n: {type: integer}}"),
        params={"n": 21},
    )
    assert run.state == "success", tasks["only"].error
    assert tasks["only"].attempts.get().stdout.strip() == "42"


@pytest.fixture
def http_server():
    received = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            received.append(json.loads(self.rfile.read(length)))
            status = 201 if self.path == "/ok" else 500
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"stored": true}')

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()


def test_http_task_success_and_unexpected_status(http_server):
    base, received = http_server
    run, tasks = run_dag(
        f"""
id: web
tasks:
  - id: good
    type: http
    method: POST
    url: {base}/ok
    json: {{rows: 5}}
  - id: bad
    type: http
    method: POST
    url: {base}/fail
    json: {{rows: 6}}
"""
    )
    assert tasks["good"].state == "success"
    assert tasks["good"].output["status_code"] == 201
    assert tasks["good"].output["body"] == {"stored": True}
    assert tasks["bad"].state == "failed"
    assert "HTTP 500" in tasks["bad"].error
    assert sorted(r["rows"] for r in received) == [5, 6]
    assert run.state == "failed"


def test_http_connection_refused_fails_cleanly():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run, tasks = run_dag(one_task(f"type: http\nurl: http://127.0.0.1:{port}/"))
    assert tasks["only"].state == "failed"
    assert "connection refused" in tasks["only"].error
