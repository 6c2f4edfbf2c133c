"""Input the database cannot store or that is too big to parse safely, sent to every
operation that takes a body: refused with a 400 naming the field (413 for size), never a
500, and nothing stored. Generated input is schemathesis' job (test_schemathesis.py);
this sends what it does not: NUL and lone surrogates in every field the operations
read, nesting thousands of levels deep, and bodies past the size limit."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from dags import boundary
from dags.models import Dag
from runs.models import DagRun, Job
from runs.tests.api_helpers import client_for
from testkit.engine import submit

pytestmark = pytest.mark.django_db

DAG = "id: target\ntasks:\n  - {id: a, command: 'true', queue: nobody-listens}\n"
# Every field an operation with a body reads, so that each meets the hostile text.
FIELDS = ("yaml", "dag_id", "params", "triggered_by", "idempotency_key", "type", "command")
FIELDS += ("url", "callable", "name", "steps", "description")
OPERATIONS = [
    "/api/v1/dags",
    "/api/v1/dags/target/runs",
    "/api/v1/runs",
    "/api/v1/jobs",
    "/api/v1/workflows",
]


@pytest.fixture
def api() -> APIClient:
    """An admin's client, and a DAG to trigger."""
    submit(DAG)
    return client_for("admin")


def post_raw(client: APIClient, path: str, body: bytes, content_type="application/json"):
    return client.generic("POST", path, body, content_type=content_type)


def nothing_stored() -> None:
    assert DagRun.objects.count() == 0 and Job.objects.count() == 0
    assert list(Dag.objects.values_list("dag_id", flat=True)) == ["target"]


@pytest.mark.parametrize("path", OPERATIONS)
@pytest.mark.parametrize("text", ["a\\u0000b", "a\\ud800b", "\\udfff"])
@pytest.mark.parametrize("field", FIELDS)
def test_unstorable_text_in_any_field_is_a_400_naming_it(api, path, text, field):
    body = {"dag_id": "target", "command": "true", "name": "n", "steps": [{"command": "true"}]}
    raw = json.dumps(body)[:-1] + f', "{field}": "{text}"}}'  # the escape, as a client sends it
    if field in ("params", "steps"):
        raw = json.dumps(body)[:-1] + f', "{field}": {{"k": ["{text}"]}}}}'
    response = post_raw(api, path, raw.encode())
    assert response.status_code == 400, (path, field, response.content)
    error = response.json()["error"]
    assert error.startswith(f"{field}") and "cannot be stored" in error, error
    nothing_stored()


@pytest.mark.parametrize("path", OPERATIONS)
def test_nesting_thousands_deep_is_a_400_before_parsing(api, path):
    for depth in (boundary.MAX_DEPTH + 1, 900, 5000, 100_000):
        raw = '{"params": {"k": ' + "[" * depth + "]" * depth + "}}"
        response = post_raw(api, path, raw.encode())
        assert response.status_code == 400, (depth, response.content)
        assert f"nested more than {boundary.MAX_DEPTH} levels" in response.json()["error"]
    nothing_stored()


@pytest.mark.parametrize("path", OPERATIONS)
@pytest.mark.parametrize("content_type", ["application/json", "application/yaml"])
def test_a_body_past_the_limit_is_a_413_naming_it(api, path, content_type):
    raw = b'{"x": "' + b"a" * boundary.MAX_BODY_BYTES + b'"}'
    response = post_raw(api, path, raw, content_type)
    assert response.status_code == 413, response.content[:200]
    assert f"{boundary.MAX_BODY_BYTES:,} bytes" in response.json()["error"]
    nothing_stored()


def test_a_dag_file_with_a_nul_escape_names_the_task_and_key(api):
    yaml = 'id: nul\ndescription: "x\\0"\ntasks:\n  - id: t\n    command: "echo \\0"\n'
    response = api.post("/api/v1/dags", yaml, content_type="application/yaml")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert errors[0].startswith("dag: 'description' contains a NUL character")
    assert errors[1].startswith("task 't': 'command' contains a NUL character")
    nothing_stored()


def test_submit_dag_and_trigger_dag_commands_refuse_with_reasons(tmp_path):
    submit(DAG)
    bad = tmp_path / "nul.yaml"
    bad.write_text('id: nul\ntasks:\n  - id: t\n    command: "echo \\0"\n')
    err = StringIO()
    with pytest.raises(CommandError, match="1 of 1 DAG file"):
        call_command("submit_dag", str(bad), stderr=err)
    assert "task 't': 'command' contains a NUL character" in err.getvalue()
    huge = tmp_path / "huge.yaml"
    huge.write_text("# " + "x" * boundary.MAX_BODY_BYTES + "\n" + DAG)
    with pytest.raises(CommandError):
        call_command("submit_dag", str(huge), stderr=err)
    assert f"larger than {boundary.MAX_BODY_BYTES:,} bytes" in err.getvalue()
    with pytest.raises(CommandError, match="params.k: contains a NUL"):
        call_command("trigger_dag", "target", "--param", 'k="a\\u0000b"', stdout=StringIO())
    with pytest.raises(CommandError, match="nested more than"):
        deep = "[" * 5000 + "]" * 5000
        call_command("trigger_dag", "target", "--param", f"k={deep}", stdout=StringIO())
    nothing_stored()


def test_the_cli_refuses_the_same_before_sending(tmp_path, capsys):
    from flowforge.cli import main

    url = "http://127.0.0.1:9"  # nothing is sent: the limits are checked first
    deep = "[" * 5000 + "]" * 5000
    assert main(["--api-url", url, "trigger", "target", "-p", f"k={deep}"]) == 1
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"#" * (boundary.MAX_BODY_BYTES + 1))
    assert main(["--api-url", url, "submit", "--file", str(huge)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"flowforge: --param k: the JSON is nested more than {boundary.MAX_DEPTH} levels deep",
        f"flowforge: {huge} is larger than {boundary.MAX_BODY_BYTES:,} bytes, the most "
        "FlowForge accepts",
    ]
