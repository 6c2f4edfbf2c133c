"""Text PostgreSQL cannot store (NUL, lone surrogates) coming out of tasks: cleaned
visibly at the storage boundary, never crashing the finish, never running a task twice."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from dags.boundary import NUL_SHOWN
from runs import states
from runs.models import TaskAttempt, TaskInstance
from runs.services import trigger_run
from testkit.engine import run_dag, submit
from workflows.dispatch import complete_attempt
from workflows.executors import ExecutionResult

pytestmark = pytest.mark.django_db(transaction=True)


def one_task(body: str, dag_id: str) -> str:
    lines = "".join(f"    {line}\n" for line in body.strip().splitlines())
    return f"id: {dag_id}\ntasks:\n  - id: only\n{lines}"


@pytest.mark.usefixtures("worker")
def test_a_nul_in_stdout_is_shown_and_the_command_runs_once(tmp_path: Path):
    runs = tmp_path / "runs"
    run, tasks = run_dag(
        one_task(f"command: \"echo ran >> {runs}; printf 'a\\\\000b\\\\n'\"", "nul-stdout")
    )
    assert run.state == "success", tasks["only"].error
    assert tasks["only"].attempts.get().stdout == f"a{NUL_SHOWN}b\n"
    assert runs.read_text() == "ran\n"  # once: the finish did not fail, nothing re-ran it


@pytest.mark.usefixtures("worker")
def test_a_nul_in_a_failing_commands_stderr_keeps_its_failure():
    run, tasks = run_dag(one_task("command: \"printf 'x\\\\000y' >&2; exit 4\"", "nul-stderr"))
    only = tasks["only"]
    assert (run.state, only.state, only.exit_code) == ("failed", "failed", 4)
    assert only.attempts.get().stderr == f"x{NUL_SHOWN}y"
    assert "exited with status 4" in only.error


@pytest.mark.usefixtures("worker")
def test_a_callable_returning_a_nul_and_a_surrogate_keeps_its_output():
    run, tasks = run_dag(
        one_task("type: python\ncallable: workflows.tests.engine_callables:unstorable", "nul-py")
    )
    assert run.state == "success", tasks["only"].error
    assert tasks["only"].output == {f"k{NUL_SHOWN}": ["a\u2400b", "c\ufffd"]}


@pytest.fixture
def nul_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"v": "a\\u0000b", "n": NaN}' if self.path == "/json" else b"x\x00y"
            self.send_response(200)
            kind = "application/json" if self.path == "/json" else "text/plain"
            self.send_header("Content-Type", kind)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.mark.usefixtures("worker")
def test_an_http_body_with_a_nul_is_stored_cleaned(nul_server):
    run, tasks = run_dag(one_task(f"type: http\nurl: {nul_server}/json", "nul-http-json"))
    assert run.state == "success", tasks["only"].error
    assert tasks["only"].output["body"] == {"v": f"a{NUL_SHOWN}b", "n": "NaN"}
    run, tasks = run_dag(one_task(f"type: http\nurl: {nul_server}/text", "nul-http-text"))
    assert run.state == "success", tasks["only"].error
    assert tasks["only"].attempts.get().stdout == f"x{NUL_SHOWN}y"


def test_output_that_still_cannot_be_stored_leaves_the_outcome_with_a_note():
    """Should storing an attempt's output fail for a reason the cleaning does not know,
    the success is still recorded (not left running for the lease to expire)."""
    run = trigger_run(submit(one_task("command: 'true'\nqueue: nobody-listens", "odd")))
    instance = TaskInstance.objects.get(run=run)
    claim = states.claim(instance.id, 0, "test-worker", 60)
    from dags.compiled import compiled_version

    result = ExecutionResult(succeeded=True, exit_code=0, stdout="fine", output=b"not json")
    assert complete_attempt(claim, result, compiled_version(claim.dag_version_id)) == ("success")
    instance.refresh_from_db()
    attempt = TaskAttempt.objects.get(task_instance=instance)
    assert (instance.state, attempt.state, instance.output, attempt.stdout) == (
        "success",
        "success",
        None,
        "",
    )
    assert attempt.error.startswith("the attempt's output and error could not be stored")
