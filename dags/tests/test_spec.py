"""Unit tests for dags.spec: parsing, validation messages and graph helpers (no database)."""

import json
import textwrap
from pathlib import Path

import pytest

from dags.dag_spec import DagSpec, TaskSpec
from dags.spec import SpecError, normalize_cron, parse_dag

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def dag(yaml_text: str, **kwargs) -> DagSpec:
    return parse_dag(textwrap.dedent(yaml_text), **kwargs)


def errors_of(yaml_text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        dag(yaml_text)
    assert str(caught.value) == "; ".join(caught.value.errors)
    return caught.value.errors


def one_task(extra: str, task_type: str = "shell") -> str:
    """A one-task DAG whose task carries `extra` (YAML lines); shell tasks leave `type` out."""
    body = {"shell": "command: 'true'", "http": "url: http://x", "python": "callable: m:f"}
    lines = "".join(f"\n    {line}" for line in textwrap.dedent(extra).strip().splitlines())
    type_line = "" if task_type == "shell" else f"\n    type: {task_type}"
    return f"id: d\ntasks:\n  - id: t{type_line}\n    {body[task_type]}{lines}\n"


def tasks_of(spec: DagSpec) -> dict[str, TaskSpec]:
    return {task.id: task for task in spec.tasks}


# --- the two sample files ---------------------------------------------------------------------


def test_etl_sample_loads_unchanged():
    spec = parse_dag((EXAMPLES / "etl-pipeline.yaml").read_text())
    tasks = tasks_of(spec)
    assert spec.id == "etl-pipeline"
    assert spec.name == "ETL Data Pipeline"
    assert (spec.schedule, spec.cron) == ("0 0 * * * *", "0 * * * *")
    assert spec.default_retries == 3
    assert list(tasks) == ["extract-users", "extract-orders", "transform", "load"]
    assert tasks["extract-users"].retries == 3
    assert tasks["extract-users"].timeout_secs == 120
    assert tasks["load"].retries == 5
    assert tasks["load"].timeout_secs == 300
    assert tasks["load"].env == {"WAREHOUSE_URL": "postgres://warehouse:5432/analytics"}
    assert tasks["transform"].depends_on == ("extract-users", "extract-orders")
    assert tasks["transform"].type == "shell"
    json.dumps(spec.to_json())  # the spec is stored as JSON


def test_data_pipeline_sample_loads_unchanged():
    spec = parse_dag((EXAMPLES / "data-pipeline.yaml").read_text())
    tasks = tasks_of(spec)
    assert spec.id == spec.name == "data-pipeline"
    assert spec.schedule is None
    assert tasks["extract"].timeout_secs == 300
    assert tasks["transform"].retries == 2
    assert tasks["transform"].backoff == "exponential"
    assert tasks["transform"].script == "transform.py"  # resolved on the worker
    assert tasks["transform"].depends_on == ("extract",)
    assert tasks["load"].method == "POST"
    assert tasks["load"].url == "https://warehouse.example.com/ingest"
    assert tasks["load"].expect_status is None
    json.dumps(spec.to_json())


def test_defaults_fill_every_key():
    spec = dag("id: d\ntasks:\n  - id: t\n    command: 'true'\n")
    assert spec.timezone == "UTC" and spec.max_active_runs == 16
    assert spec.catchup is False and spec.params == {} and spec.description == ""
    task = spec.tasks[0]
    assert task.name == "t" and task.type == "shell" and task.retries == 0
    assert (task.retry_delay_secs, task.retry_max_delay_secs) == (1, 60)
    assert (task.timeout_secs, task.queue, task.trigger_rule) == (
        3600,
        "default",
        "all_success",
    )


def test_http_and_env_values_are_normalized():
    task = dag(
        one_task(
            """
            method: put
            headers: {X-Count: 3, X-Flag: true}
            json: {when: 2024-01-02, n: [1, 2]}
            expect_status: [200, 204]
            env: {DEBUG: true}
            """,
            "http",
        )
    ).tasks[0]
    assert task.method == "PUT"
    assert task.headers == {"X-Count": "3", "X-Flag": "true"}
    assert task.json == {"when": "2024-01-02", "n": [1, 2]}
    assert task.expect_status == (200, 204)
    assert task.env == {"DEBUG": "true"}


def test_empty_optional_values_mean_defaults():
    task = dag("id: d\ntasks:\n  - id: t\n    command: x\n    depends_on:\n    env:\n").tasks[0]
    assert task.depends_on == () and task.env == {}


def test_run_timeout_is_read_as_seconds():
    assert (
        parse_dag("id: d\nrun_timeout: 2h\ntasks: [{id: t, command: x}]\n").run_timeout_secs == 7200
    )
    assert (
        parse_dag("id: d\nrun_timeout_secs: 90\ntasks: [{id: t, command: x}]\n").run_timeout_secs
        == 90
    )
    assert parse_dag("id: d\ntasks: [{id: t, command: x}]\n").run_timeout_secs is None


def test_start_date_is_read_in_the_dag_timezone():
    spec = dag(
        """
        id: d
        timezone: Europe/Paris
        start_date: 2024-07-01
        schedule: "@daily"
        tasks: [{id: t, command: 'true'}]
        """
    )
    assert spec.start_date == "2024-07-01T00:00:00+02:00"
    assert (spec.schedule, spec.cron) == ("@daily", "0 0 * * *")  # echoed as written


# --- cron ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("@hourly", "0 * * * *"),
        ("@yearly", "0 0 1 1 *"),
        ("0 0 * * * *", "0 * * * *"),
        ("*/15  9-17 * * mon-fri", "*/15 9-17 * * mon-fri"),
    ],
)
def test_normalize_cron(expr, expected):
    assert normalize_cron(expr) == expected


@pytest.mark.parametrize(
    "expr",
    [
        "61 * * * *",
        "* * * *",
        "every hour",
        "@sometimes",
        "0 0 L * *",
        "30 0 * * * *",
        "0 0 31 2 *",
    ],
)
def test_normalize_cron_rejects(expr):
    with pytest.raises(ValueError, match="cron"):
        normalize_cron(expr)


def test_bad_cron_is_named():
    (error,) = errors_of("id: d\nschedule: '0 25 * * *'\ntasks: [{id: t, command: x}]\n")
    assert error.startswith("dag: ") and "'0 25 * * *'" in error and "hour" in error


def test_six_field_cron_with_seconds_is_rejected():
    (error,) = errors_of("id: d\nschedule: '30 0 * * * *'\ntasks: [{id: t, command: x}]\n")
    assert "'30 0 * * * *'" in error and "seconds" in error


def test_bad_timezone():
    (error,) = errors_of("id: d\ntimezone: europe/londn\ntasks: [{id: t, command: x}]\n")
    assert "'europe/londn'" in error and "Europe/London" in error


# --- errors ------------------------------------------------------------------------------------


def test_cycle_names_the_tasks_in_order():
    errors = errors_of(
        """
        id: d
        tasks:
          - {id: a, command: x, depends_on: [c]}
          - {id: b, command: x, depends_on: [a]}
          - {id: c, command: x, depends_on: [b]}
          - {id: s, command: x, depends_on: [s]}
        """
    )
    assert errors == ["cycle: a -> b -> c -> a", "cycle: s -> s"]


def test_missing_dependency():
    errors = errors_of(
        """
        id: d
        tasks:
          - {id: transform, command: x}
          - {id: load, command: x, depends_on: [transfrom]}
        """
    )
    assert errors == [
        "task 'load': depends_on names unknown task 'transfrom' (did you mean 'transform'?)"
    ]


def test_duplicate_task_id():
    (error,) = errors_of("id: d\ntasks: [{id: a, command: x}, {id: a, command: y}]\n")
    assert error.startswith("task 'a': duplicate task id")


def test_unknown_task_key_has_hint():
    errors = errors_of(
        "id: d\ntasks:\n  - {id: t, command: x}\n  - {id: load, depend_on: [t], command: x}\n"
    )
    assert errors == ["task 'load': unknown key 'depend_on' (did you mean 'depends_on'?)"]


def test_unknown_dag_key_has_hint():
    errors = errors_of("id: d\nschedul: '@daily'\ntasks: [{id: t, command: x}]\n")
    assert errors == ["dag: unknown key 'schedul' (did you mean 'schedule'?)"]


def test_key_of_another_type_is_named():
    errors = errors_of(one_task("url: http://x"))
    assert errors == ["task 't': key 'url' belongs to http tasks, not shell tasks"]


def test_both_spellings_are_an_error():
    errors = errors_of(one_task("timeout: 5m\ntimeout_secs: 300"))
    assert errors == ["task 't': give either 'timeout_secs' or 'timeout', not both"]


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (
            "retries: three",
            "'retries' must be an integer from 0 to 1000000, got a string ('three')",
        ),
        ("retries: true", "'retries' must be an integer from 0 to 1000000, got a boolean (true)"),
        ("retries: -1", "'retries' must be an integer from 0 to 1000000, got an integer (-1)"),
        ("depends_on: extract", "'depends_on' must be a list of task ids"),
        ("trigger_rule: sometimes", "'trigger_rule' must be one of all_success"),
        ("timeout_secs: 0", "'timeout_secs' must be a number > 0"),
        ("timeout: soon", "'timeout' must be a duration such as 90s"),
        ("retry_delay_secs: -2", "'retry_delay_secs' must be a number from 0 to 31622400"),
        ("env: [a]", "'env' must be a mapping, got a list"),
        ("env: {A: [1]}", "'env.A' must be a single value"),
        ("retry: {maxAttempts: 0}", "'maxAttempts' must be an integer from 1 to 1000000"),
        ("retry: {max_attempts: 2}", "unknown key 'max_attempts' (did you mean 'maxAttempts'?)"),
        ("type: batch", "'type' must be one of shell, http, python"),
        ("queue: 5", "'queue' must be a non-empty string"),
    ],
)
def test_bad_task_values(extra, fragment):
    errors = errors_of(one_task(extra))
    assert len(errors) == 1 and errors[0].startswith("task 't': ") and fragment in errors[0]


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ("expect_status: 200", "'expect_status' must be a non-empty list"),
        ("expect_status: [200, 700]", "'expect_status' must be a non-empty list"),
        ("method: FETCH", "'method' must be one of GET"),
        ("body: x\njson: {}", "give either 'body' or 'json', not both"),
        ("command: ls", "key 'command' belongs to shell tasks, not http tasks"),
    ],
)
def test_bad_http_values(extra, fragment):
    errors = errors_of(one_task(extra, "http"))
    assert len(errors) == 1 and fragment in errors[0]


def test_http_url_scheme_is_checked():
    errors = errors_of("id: d\ntasks: [{id: t, type: http, url: 'ftp://x'}]\n")
    assert errors == ["task 't': 'url' 'ftp://x' must start with http:// or https://"]


def test_python_task_needs_one_of_script_or_callable():
    assert (
        "exactly one of 'script' or 'callable'"
        in errors_of("id: d\ntasks: [{id: t, type: python}]\n")[0]
    )
    assert "package.module:function" in errors_of(one_task("", "python").replace("m:f", "m.f"))[0]


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ("max_active_runs: 0", "'max_active_runs' must be an integer from 1 to 1000000"),
        ("catchup: yes please", "'catchup' must be true or false"),
        ("params: [a]", "'params' must be a mapping"),
        (
            "start_date: tomorrow",
            "'start_date' must be an ISO 8601 date or date-time, got a string ('tomorrow')",
        ),
        ("default_retries: 1.5", "'default_retries' must be an integer from 0 to 1000000"),
        ("id: ETL Pipeline", "'id' 'ETL Pipeline' must match"),
        ("end_date: soon", "'end_date' must be an ISO 8601 date or date-time"),
        (
            "start_date: 2026-02-01\nend_date: 2026-01-01",
            "'end_date' 2026-01-01T00:00:00+00:00 is before 'start_date' 2026-02-01",
        ),
        ("concurrency_policy: skip", "'concurrency_policy' must be one of allow, forbid, replace"),
        ("run_timeout: soon", "'run_timeout' must be a duration such as 90s, 5m or 2h"),
        ("run_timeout_secs: -1", "'run_timeout_secs' must be a number > 0"),
        ("schedule: '0 0 * * 8'", "bad 'schedule'"),
        ("timezone: Mars/Olympus", "'timezone' 'Mars/Olympus' is not an IANA time zone name"),
    ],
)
def test_bad_dag_values(extra, fragment):
    errors = errors_of(
        f"id: d\n{extra}\ntasks: [{{id: t, command: x}}]\n".replace("id: d\nid:", "id:")
    )
    assert len(errors) == 1 and errors[0].startswith("dag: ") and fragment in errors[0]


def test_yaml_syntax_error_reports_line():
    (error,) = errors_of("id: d\ntasks:\n  - id: t\n    command: [unclosed\n  - id: u\n")
    assert error.startswith("YAML syntax error at line 5, column")


def test_duplicate_yaml_key_is_reported():
    errors = errors_of("id: d\ntasks:\n  - id: t\n    command: a\n    command: b\n")
    assert errors == ["task 't': key 'command' is given twice (second time at line 5)"]


def test_empty_task_list():
    assert errors_of("id: d\ntasks: []\n") == [
        "dag: 'tasks' is empty; a DAG needs at least one task"
    ]


def test_every_problem_is_reported_together():
    errors = errors_of(
        """
        id: d
        schedule: nope
        timezone: Mars/Base
        tasks:
          - {id: a, command: x, retries: -1}
          - {id: b, depend_on: [a], command: x}
          - {id: c, command: x, depends_on: [zzz]}
        """
    )
    assert len(errors) == 5
    assert [e.split(":")[0] for e in errors] == ["dag", "dag", "task 'a'", "task 'b'", "task 'c'"]


def test_task_without_usable_id_is_numbered():
    errors = errors_of("id: d\ntasks:\n  - {command: x}\n  - 7\n")
    assert errors == [
        "task #1: missing required key 'id'",
        "task #2: must be a mapping with 'id' and more, got an integer (7)",
    ]


@pytest.mark.parametrize(
    "document",
    [
        "",
        "# only a comment\n",
        "5",
        "[1, 2]",
        "just text",
        "id: d\ntasks: 5\n",
        "id: d\ntasks: [1, 2]\n",
        "id: d\ntasks: [[]]\n",
        "id: 123\ntasks: [{id: t, command: x}]\n",
        "id: d\ntasks: [{id: t, command: x, env: [a]}]\n",
        "id: d\ntasks: [{id: [t], command: {a: b}, depends_on: [[x]], type: [shell]}]\n",
        "id: d\ntasks: [{id: t, type: http, url: 5, headers: [1], expect_status: [true]}]\n",
        "id: d\ntasks: [{id: t, type: python, script: 5, callable: 6}]\n",
        "id: d\ntasks: [{id: t, command: x, retry: 3, timeout: [1]}]\n",
        "id: d\ntasks: [{id: t, command: x, retry: {maxAttempts: 2}, backoff: fixed, retries: 1}]\n",
        "id: d\nschedule: 5\ntimezone: 7\nstart_date: 7\ntasks: [{id: t, command: x}]\n",
        "id: d\ntimezone: ''\nstart_date: '2024-13-45'\ntasks: [{id: t, command: x}]\n",
        "id: d\nparams: {1: a}\ntasks: [{id: t, command: x}]\n",
        "? [a]\n: b\n",
        "id: !!python/object:os.system x\n",
        "id: d\n---\nid: e\n",
        "id: d\ntasks: [{id: t, command: x, 5: y, null: z}]\n",
        "{id: d, id: e, tasks: {a: 1}}",
        "name: null\ntasks: [{id: t, command: x}]\n",
        "id: d\nparams: &a {x: *a}\ntasks: [{id: t, command: x, env: &b {A: *b}}]\n",
        pytest.param("id: d\nparams: " + "[" * 1000 + "]" * 1000 + "\ntasks: []\n", id="deep"),
    ],
)
def test_odd_documents_raise_spec_error_only(document):
    with pytest.raises(SpecError) as caught:
        parse_dag(document)
    assert caught.value.errors and all(isinstance(e, str) and e for e in caught.value.errors)


# --- graph helpers -----------------------------------------------------------------------------


def diamond() -> DagSpec:
    return dag(
        """
        id: diamond
        tasks:
          - {id: d, command: x, depends_on: [c, b]}
          - {id: c, command: x, depends_on: [a]}
          - {id: b, command: x, depends_on: [a]}
          - {id: a, command: x}
        """
    )


def test_downstream_map_of_a_diamond():
    assert diamond().downstream == {"d": (), "c": ("d",), "b": ("d",), "a": ("c", "b")}


def test_task_by_id():
    spec = diamond()
    assert spec.task("b") is spec.tasks[2]
    with pytest.raises(KeyError):
        spec.task("e")


def test_control_characters_are_a_syntax_error_not_a_crash():
    with pytest.raises(SpecError, match="YAML syntax error"):
        parse_dag("\x05id: x\n")


@pytest.mark.parametrize(
    "line", ["retries: 10000000000000000000", "timeout_secs: .inf", "retry_delay_secs: 1e12"]
)
def test_values_too_large_for_the_database_are_rejected(line):
    with pytest.raises(SpecError, match="at most|from 0 to"):
        parse_dag(f"id: big\ntasks:\n  - id: a\n    command: x\n    {line}\n")


# --- the stored form (DagVersion.spec) ---------------------------------------------------------

RICH_DAG = """
id: d
schedule: "@daily"
timezone: Europe/Paris
start_date: 2024-07-01
params: {a: 1, b: [1, 2]}
max_active_tasks: 3
tasks:
  - id: t
    type: http
    url: http://x
    headers: {X-Count: 3}
    json: {when: 2024-01-02, n: [1, 2]}
    expect_status: [200, 204]
    timeout: 1.5m
  - {id: p, type: python, callable: "m:f", depends_on: [t], retry: {maxAttempts: 3}}
  - {id: s, command: x, depends_on: [t, p], env: {A: 1}, trigger_rule: all_done, queue: q}
"""


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(RICH_DAG, id="rich"),
        *(pytest.param(path.read_text(), id=path.name) for path in EXAMPLES.glob("*.yaml")),
    ],
)
def test_stored_form_is_plain_json_and_reads_back_the_same(text):
    spec = parse_dag(text)
    stored = spec.to_json()
    assert json.loads(json.dumps(stored)) == stored  # lists, not tuples; nothing else
    assert DagSpec.from_json(stored) == spec


def test_stored_form_holds_every_key():
    assert dag("id: d\ntasks:\n  - id: t\n    command: 'true'\n").to_json() == {
        "id": "d",
        "name": "d",
        "description": "",
        "schedule": None,
        "cron": None,
        "timezone": "UTC",
        "catchup": False,
        "start_date": None,
        "end_date": None,
        "concurrency_policy": "allow",
        "run_timeout_secs": None,
        "max_active_runs": 16,
        "max_active_tasks": None,
        "default_retries": 0,
        "params": {},
        "tasks": [
            {
                "id": "t",
                "name": "t",
                "type": "shell",
                "command": "true",
                "script": None,
                "callable": None,
                "method": "GET",
                "url": None,
                "headers": {},
                "body": None,
                "json": None,
                "expect_status": None,
                "depends_on": [],
                "retries": 0,
                "retry_delay_secs": 1,
                "retry_max_delay_secs": 60,
                "backoff": "exponential",
                "timeout_secs": 3600,
                "env": {},
                "queue": "default",
                "trigger_rule": "all_success",
                "pool": None,
            }
        ],
    }


def test_keys_an_older_version_did_not_store_take_the_parser_defaults():
    stored = {"id": "d", "tasks": [{"id": "t", "command": "true"}]}
    assert DagSpec.from_json(stored) == dag("id: d\ntasks:\n  - id: t\n    command: 'true'\n")


def test_an_older_stored_version_reads():
    stored = {  # before `cron`: `schedule` held the cron line; no trigger rules or backoff
        "id": "old",
        "name": "Old",
        "schedule": "0 * * * *",
        "max_active_runs": 2,
        "params": {"a": 1},
        "tasks": [
            {"id": "a", "command": "x", "retries": 1, "retry_delay_secs": 5, "queue": "q"},
            {"id": "b", "command": "y", "depends_on": ["a"], "no_longer_a_key": True},
        ],
    }
    spec = DagSpec.from_json(stored)
    assert (spec.name, spec.schedule, spec.cron) == ("Old", "0 * * * *", "0 * * * *")
    assert (spec.max_active_runs, spec.params, spec.timezone) == (2, {"a": 1}, "UTC")
    a, b = spec.tasks
    assert (a.retries, a.retry_delay_secs, a.retry_max_delay_secs) == (1, 5, 60)
    assert (a.backoff, a.trigger_rule, a.queue) == ("exponential", "all_success", "q")
    assert (b.name, b.depends_on, b.timeout_secs, b.queue) == ("b", ("a",), 3600, "default")
    assert spec.downstream == {"a": ("b",), "b": ()}
