"""DAG file parsing: YAML text in, one validated and normalized DagSpec out.

Pure Python (no Django), so the API, the CLI and the tests share one set of rules.
Every problem in a file is collected and raised together as a single SpecError.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import functools
import re
import reprlib
import zoneinfo
from collections.abc import Callable
from typing import Any

import networkx as nx
import yaml
from croniter import CroniterError, croniter

from . import boundary, params
from .dag_spec import DagSpec

ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")
CALLABLE_PATTERN = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
DURATION_PATTERN = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

TASK_TYPES = ("shell", "http", "python")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
BACKOFFS = ("exponential", "fixed")
# What a scheduled tick does while an earlier run of its DAG is unfinished (CONTRACT 7).
CONCURRENCY_POLICIES = ("allow", "forbid", "replace")
TRIGGER_RULES = (
    "all_success", "all_failed", "all_done", "one_success", "one_failed", "none_failed",
)  # fmt: skip
DAG_KEYS = (
    "id", "name", "description", "schedule", "timezone", "catchup", "start_date", "end_date",
    "concurrency_policy", "run_timeout", "run_timeout_secs", "max_active_runs",
    "max_active_tasks", "default_retries", "params", "tasks",
)  # fmt: skip
COMMON_TASK_KEYS = (
    "id", "name", "type", "depends_on", "dependencies", "retries", "retry",
    "retry_delay_secs", "retry_max_delay_secs", "backoff", "timeout_secs", "timeout",
    "env", "queue", "trigger_rule", "pool",
)  # fmt: skip
TYPE_KEYS = {
    "shell": ("command",),
    "python": ("script", "callable"),
    "http": ("method", "url", "headers", "body", "json", "expect_status"),
}
TASK_KEYS = COMMON_TASK_KEYS + tuple(key for keys in TYPE_KEYS.values() for key in keys)
KEY_SPELLINGS = (("depends_on", "dependencies"), ("retries", "retry"), ("timeout_secs", "timeout"))
RETRY_KEYS = ("maxAttempts", "backoff")
# YAML aliases let a short file expand into a huge or self-referencing value; free-form
# values (params, json) are cut off at these limits rather than copied without end.
MAX_JSON_VALUES, MAX_JSON_DEPTH = boundary.MAX_VALUES, boundary.MAX_DEPTH

CRON_MACROS = {
    "@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}  # fmt: skip
CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
# Celery beat understands numbers, ranges, steps, lists and month/weekday names; croniter's
# extensions (L, #, ?, H) would pass croniter but fail later in beat, so they are refused here.
CRON_NUMERIC_FIELD = re.compile(r"[0-9*,/-]+")
CRON_NAMED_FIELD = re.compile(r"([0-9*,/-]|(?<![a-z])[a-z]{3}(?![a-z]))+")


class SpecError(ValueError):
    """A DAG file was rejected; `errors` lists every problem, one sentence each."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


# --- YAML loading -----------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that records keys repeated within one mapping instead of silently
    keeping the last one."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.duplicate_keys: list[tuple[dict, Any, int]] = []

    def construct_strict_map(self, node: yaml.MappingNode):
        data: dict = {}
        yield data
        seen: set = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = self.construct_object(key_node)
            if key in seen:
                self.duplicate_keys.append((data, key, key_node.start_mark.line + 1))
            seen.add(key)
        data.update(self.construct_mapping(node))


_StrictLoader.add_constructor("tag:yaml.org,2002:map", _StrictLoader.construct_strict_map)


def _load_yaml(text: str) -> tuple[Any, list[tuple[dict, Any, int]]]:
    loader = None
    try:
        loader = _StrictLoader(text)  # the reader already rejects control characters here
        return loader.get_single_data(), loader.duplicate_keys
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError([f"YAML syntax error{where}: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise SpecError([f"YAML syntax error: {exc}"]) from None
    except RecursionError:
        raise SpecError(["YAML syntax error: the document is nested too deeply"]) from None
    finally:
        if loader is not None:
            loader.dispose()


# --- typed reads --------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    """How a value reads in an error message: a string ('x'), a boolean (true), null..."""
    if value is None or isinstance(value, bool):
        return "null" if value is None else f"a boolean ({str(value).lower()})"
    labels = {int: "an integer", float: "a number", str: "a string", dict: "a mapping"}
    label = labels.get(type(value), "a list" if isinstance(value, list) else "a value")
    return f"{label} ({_shown(value)})"


def _shown(value: Any) -> str:
    """repr() cut short, so a huge or self-referencing value cannot swamp a message."""
    return _SHORT_REPR.repr(value)


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = 60
_SHORT_REPR.maxlist = _SHORT_REPR.maxdict = 4
_SHORT_REPR.maxlevel = 2


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _stringify_scalar(value: Any) -> str | None:
    """A YAML scalar as text (true -> 'true', null -> ''); None for lists and mappings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, str | int | float):
        return str(value)
    return value.isoformat() if isinstance(value, dt.date) else None


def _to_json(value: Any, budget: list[int], depth: int = 0) -> Any:
    """YAML-only values (dates, sets, binary) made JSON-safe; mapping keys become strings."""
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_JSON_DEPTH:
        raise ValueError(f"more than {MAX_JSON_VALUES} values or {MAX_JSON_DEPTH} levels")
    if isinstance(value, dict):
        return {str(key): _to_json(item, budget, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        items = sorted(value, key=repr) if isinstance(value, set) else value  # stable order
        return [_to_json(item, budget, depth + 1) for item in items]
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


# Upper bounds keep values inside what the database columns and timers can hold.
MAX_INTEGER = 1_000_000
MAX_SECONDS = 366 * 24 * 3600


class _Reader:
    """Reads typed values out of one YAML mapping; problems are recorded, never raised."""

    def __init__(self, mapping: dict, where: str, errors: list[str]):
        self.mapping, self.where, self.errors = mapping, where, errors

    def fail(self, message: str) -> None:
        self.errors.append(f"{self.where}: {message}")

    def _get(self, key: str, default: Any, valid: Callable[[Any], bool], expected: str) -> Any:
        """The value under key if valid(value), else default (recording why when present)."""
        if key not in self.mapping:
            return default
        value = self.mapping[key]
        if valid(value):
            return value
        self.fail(f"'{key}' must be {expected}, got {_describe(value)}")
        return default

    def string(self, key: str, default: str | None = None, choices: tuple = ()) -> str | None:
        if choices:
            return self._get(key, default, choices.__contains__, f"one of {', '.join(choices)}")
        return self._get(
            key, default, lambda v: isinstance(v, str) and bool(v), "a non-empty string"
        )

    def text(self, key: str) -> str:
        return self._get(key, None, lambda v: isinstance(v, str) or v is None, "a string") or ""

    def integer(
        self, key: str, default: int | None, minimum: int, maximum: int = MAX_INTEGER
    ) -> int | None:
        """An integer in range; null is accepted (as the default) only when the default is null."""

        def valid(v: Any) -> bool:
            return (_is_int(v) and minimum <= v <= maximum) or (v is None and default is None)

        return self._get(key, default, valid, f"an integer from {minimum} to {maximum}")

    def number(self, key: str, default: float, minimum: float) -> float:
        return self._get(
            key,
            default,
            lambda v: _is_number(v) and minimum <= v <= MAX_SECONDS,
            f"a number from {minimum:g} to {MAX_SECONDS}",
        )

    def boolean(self, key: str, default: bool) -> bool:
        return self._get(key, default, lambda v: isinstance(v, bool), "true or false")

    def mapping_of(self, key: str) -> dict:
        value = self._get(key, {}, lambda v: isinstance(v, dict) or v is None, "a mapping") or {}
        bad_keys = [k for k in value if not isinstance(k, str)]
        if bad_keys:
            self.fail(f"'{key}' keys must be strings, got {_describe(bad_keys[0])}")
        return value

    def json_value(self, key: str, value: Any) -> Any:
        try:
            return _to_json(value, [MAX_JSON_VALUES])
        except ValueError as exc:
            self.fail(f"'{key}' is too large ({exc})")
            return None

    def scalar_map(self, key: str) -> dict[str, str]:
        result = {}
        for name, value in self.mapping_of(key).items():
            text = _stringify_scalar(value)
            if text is None:
                self.fail(f"'{key}.{name}' must be a single value, got {_describe(value)}")
            result[str(name)] = text or ""
        return result

    def string_list(self, key: str, what: str) -> list[str]:
        value = self.mapping.get(key, [])
        if value is None:
            return []
        if isinstance(value, str):
            self.fail(f"'{key}' must be a list of {what}, got {_describe(value)}; write [{value}]")
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(f"'{key}' must be a list of {what} (strings), got {_describe(value)}")
            return []
        return list(dict.fromkeys(value))

    def check_keys(self, known: tuple[str, ...]) -> None:
        for key in self.mapping:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                self.fail(f"unknown key {_shown(str(key))}{hint}")


# --- cron, timezone, dates -----------------------------------------------------------------------


def normalize_cron(expr: str) -> str:
    """A schedule as a 5-field cron line; macros expanded, a leading '0' seconds field dropped."""
    if not isinstance(expr, str) or not expr.strip():
        raise ValueError(f"cron expression must be a non-empty string, got {_describe(expr)}")
    text = " ".join(expr.lower().split())
    if text.startswith("@"):
        if text not in CRON_MACROS:
            raise ValueError(
                f"unknown cron macro {_shown(expr)}; use one of {', '.join(CRON_MACROS)}"
            )
        return CRON_MACROS[text]
    fields = text.split(" ")
    if len(fields) == 6:
        if fields[0] != "0":
            raise ValueError(
                f"cron expression {_shown(expr)} has seconds field {_shown(fields[0])}; "
                "only 0 is supported, runs start at most once a minute"
            )
        fields = fields[1:]
    if len(fields) != 5:
        raise ValueError(
            f"cron expression {_shown(expr)} has {len(fields)} fields; expected 5 "
            f"({' '.join(CRON_FIELDS)}) or a macro such as @hourly"
        )
    for position, (field, label) in enumerate(zip(fields, CRON_FIELDS, strict=True)):
        pattern = CRON_NAMED_FIELD if label in ("month", "day-of-week") else CRON_NUMERIC_FIELD
        probe = ["*"] * 5
        probe[position] = field
        if not pattern.fullmatch(field) or not croniter.is_valid(" ".join(probe)):
            raise ValueError(
                f"cron expression {_shown(expr)} has an invalid {label} field {_shown(field)}"
            )
    try:  # each field is fine alone, but e.g. '0 0 31 2 *' names a day that never comes
        croniter(" ".join(fields), dt.datetime(2000, 1, 1)).get_next(dt.datetime)
    except CroniterError:
        raise ValueError(f"cron expression {_shown(expr)} never fires") from None
    return " ".join(fields)


@functools.cache
def _timezone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones() | {"UTC"})


def _read_timezone(reader: _Reader) -> str:
    name = reader.string("timezone", "UTC") or "UTC"
    if name in _timezone_names():
        return name
    lowered = {tz.lower(): tz for tz in _timezone_names()}
    close = difflib.get_close_matches(name.lower(), lowered, n=1)
    hint = f" (did you mean '{lowered[close[0]]}'?)" if close else ""
    reader.fail(f"'timezone' {_shown(name)} is not an IANA time zone name{hint}")
    return "UTC"


def _read_date(reader: _Reader, key: str, timezone: str) -> str | None:
    """`start_date` or `end_date` as an ISO 8601 date-time with its UTC offset; a date is
    its midnight, a naive date-time a wall-clock time in the DAG's zone."""
    value = reader.mapping.get(key)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = dt.datetime.fromisoformat(value.strip())
    if value is None or not isinstance(value, dt.datetime):
        if value is not None:
            reader.fail(f"'{key}' must be an ISO 8601 date or date-time, got {_describe(value)}")
        return None
    if value.tzinfo is None:  # naive times are wall-clock times in the DAG's zone
        value = value.replace(tzinfo=zoneinfo.ZoneInfo(timezone))
    return value.isoformat()


def _read_schedule(reader: _Reader) -> tuple[str | None, str | None]:
    """(schedule as written, its 5-field cron line), or (None, None) for manual runs only."""
    expr = reader.mapping.get("schedule")
    if expr is None:
        return None, None
    try:
        return expr, normalize_cron(expr)
    except ValueError as exc:
        reader.fail(f"bad 'schedule': {exc}")
        return None, None


# --- DAG level ---------------------------------------------------------------------------------


def _read_dag(document: dict, errors: list[str]) -> dict:
    reader = _Reader(document, "dag", errors)
    reader.check_keys(DAG_KEYS)
    id_key = "id" if "id" in document else "name"
    dag_id = reader.string(id_key)
    if id_key not in document:
        reader.fail("missing required key 'id' (or 'name' when there is no 'id')")
    elif dag_id is not None and not ID_PATTERN.fullmatch(dag_id):
        hint = "" if id_key == "id" else "; or add an 'id' key and keep this as display text"
        reader.fail(f"'{id_key}' {_shown(dag_id)} must match {ID_PATTERN.pattern}{hint}")
    timezone = _read_timezone(reader)
    schedule, cron = _read_schedule(reader)
    dag: dict[str, Any] = {
        "id": dag_id,
        "name": dag_id if id_key == "name" else reader.string("name", dag_id),
        "description": reader.text("description"),
        "schedule": schedule,  # as the user wrote it, echoed back by the API
        "cron": cron,
        "timezone": timezone,
        "catchup": reader.boolean("catchup", False),
        "start_date": _read_date(reader, "start_date", timezone),
        "end_date": _read_date(reader, "end_date", timezone),
        "concurrency_policy": reader.string("concurrency_policy", "allow", CONCURRENCY_POLICIES),
        "run_timeout_secs": _read_duration(reader, "run_timeout", None),
        "max_active_runs": reader.integer("max_active_runs", 16, minimum=1),
        "max_active_tasks": reader.integer("max_active_tasks", None, minimum=1),
        "default_retries": reader.integer("default_retries", 0, minimum=0),
        "params": reader.json_value("params", reader.mapping_of("params")) or {},
        "tasks": [],
    }
    start, end = dag["start_date"], dag["end_date"]
    if start and end and dt.datetime.fromisoformat(end) < dt.datetime.fromisoformat(start):
        reader.fail(f"'end_date' {end} is before 'start_date' {start}")
    _check_params(reader, dag)
    return dag


def _check_params(reader: _Reader, dag: dict) -> None:
    """Typed params are JSON Schema (dags/params.py); a scheduled run has nobody to give
    a param, so a DAG with a schedule has a default for each."""
    for problem in params.declaration_problems(dag["params"]):
        reader.fail(problem)
    if dag["schedule"] and (missing := params.required(dag["params"])):
        reader.fail(
            f"params {', '.join(missing)} have no default, and the runs of the schedule "
            "have nobody to give them; add a default"
        )


# --- task level --------------------------------------------------------------------------------


def _task_label(task: Any, position: int) -> str:
    task_id = task.get("id") if isinstance(task, dict) else None
    return f"task '{task_id}'" if isinstance(task_id, str) and task_id else f"task #{position}"


def _check_task_keys(reader: _Reader, task_type: str | None) -> None:
    reader.check_keys(TASK_KEYS)
    for first, second in KEY_SPELLINGS:
        if first in reader.mapping and second in reader.mapping:
            reader.fail(f"give either '{first}' or '{second}', not both")
    if task_type is None:
        return
    for owner, keys in TYPE_KEYS.items():
        for key in keys:
            if owner != task_type and key in reader.mapping:
                reader.fail(f"key '{key}' belongs to {owner} tasks, not {task_type} tasks")


def _read_duration(
    reader: _Reader, name: str = "timeout", default: float | None = 3600
) -> float | None:
    """`NAME: 2h` (a duration) or `NAME_secs: 7200` (seconds), as seconds; `default`
    when neither is given."""
    key = name if name in reader.mapping else f"{name}_secs"
    if key not in reader.mapping:
        return default
    value = reader.mapping[key]
    match = DURATION_PATTERN.fullmatch(value.strip()) if isinstance(value, str) else None
    if key == name and match:
        value = float(match[1]) * DURATION_UNITS[match[2]]
        value = int(value) if value.is_integer() else value
    if not _is_number(value) or not 0 < value <= MAX_SECONDS:
        expected = "a duration such as 90s, 5m or 2h" if key == name else "a number > 0"
        expected += f" of at most {MAX_SECONDS} seconds"
        reader.fail(f"'{key}' must be {expected}, got {_describe(reader.mapping[key])}")
        return default
    return value


def _read_retries(reader: _Reader, default_retries: int) -> tuple[int, str]:
    """(retries, backoff) from `retries`/`backoff` or the `retry: {maxAttempts, backoff}` form."""
    if "retry" not in reader.mapping:
        retries = reader.integer("retries", default_retries, minimum=0)
        return retries or 0, reader.string("backoff", "exponential", BACKOFFS) or "exponential"
    retry = reader.mapping_of("retry")
    nested = _Reader(retry, f"{reader.where}: 'retry'", reader.errors)
    nested.check_keys(RETRY_KEYS)
    if "backoff" in retry and "backoff" in reader.mapping:
        reader.fail("give either 'backoff' or 'retry.backoff', not both")
    attempts = nested.integer("maxAttempts", default_retries + 1, minimum=1) or 1
    backoff = nested.string("backoff", reader.string("backoff", "exponential", BACKOFFS), BACKOFFS)
    return attempts - 1, backoff or "exponential"


def _read_python(reader: _Reader) -> tuple[str | None, str | None]:
    """(script, callable). A relative script is kept as written: workers resolve it against
    their DAGs folder (CONTRACT section 1), wherever the file was submitted from."""
    script, function = reader.string("script"), reader.string("callable")
    if ("script" in reader.mapping) == ("callable" in reader.mapping):
        reader.fail("python tasks need exactly one of 'script' or 'callable'")
    if function and not CALLABLE_PATTERN.fullmatch(function):
        reader.fail(f"'callable' {_shown(function)} must look like package.module:function")
    return script, function


def _read_http(reader: _Reader) -> dict:
    url = reader.string("url")
    if "url" not in reader.mapping:
        reader.fail("http tasks need a 'url'")
    elif url and not re.match(r"https?://[^/\s]+", url):
        reader.fail(f"'url' {_shown(url)} must start with http:// or https://")
    method = reader.mapping.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
        reader.fail(f"'method' must be one of {', '.join(HTTP_METHODS)}, got {_describe(method)}")
        method = "GET"
    if "body" in reader.mapping and "json" in reader.mapping:
        reader.fail("give either 'body' or 'json', not both")
    statuses = reader.mapping.get("expect_status")
    if statuses is not None and not (
        isinstance(statuses, list)
        and statuses
        and all(_is_int(code) and 100 <= code <= 599 for code in statuses)
    ):
        reader.fail(
            f"'expect_status' must be a non-empty list of HTTP status codes (100-599), "
            f"got {_describe(statuses)}"
        )
        statuses = None
    return {
        "method": method.upper(),
        "url": url,
        "headers": reader.scalar_map("headers"),
        "body": reader.text("body") or None,
        "json": reader.json_value("json", reader.mapping.get("json")),
        "expect_status": statuses,
    }


def _read_pool(reader: _Reader) -> str | None:
    """A pool's name (it must exist when the DAG is submitted: dags/services.py)."""
    name = reader.string("pool")
    if name and not ID_PATTERN.fullmatch(name):
        reader.fail(f"'pool' {_shown(name)} must match {ID_PATTERN.pattern} (lower-case)")
        return None
    return name


def _read_task(task: dict, where: str, dag: dict, errors: list) -> dict:
    reader = _Reader(task, where, errors)
    task_id = reader.string("id")
    if "id" not in task:
        reader.fail("missing required key 'id'")
    elif task_id and not ID_PATTERN.fullmatch(task_id):
        reader.fail(f"'id' {_shown(task_id)} must match {ID_PATTERN.pattern} (lower-case)")
    task_type = reader.string("type", "shell", TASK_TYPES)
    known_type = task_type if task.get("type", "shell") == task_type else None
    _check_task_keys(reader, known_type)
    if known_type == "shell" and "command" not in task:
        reader.fail("shell tasks need a 'command'")
    script, function = _read_python(reader) if known_type == "python" else (None, None)
    http = _read_http(reader) if known_type == "http" else {}
    retries, backoff = _read_retries(reader, dag["default_retries"])
    depends_key = "dependencies" if "dependencies" in task else "depends_on"
    return {
        "id": task_id,
        "name": reader.string("name", task_id),
        "type": task_type,
        "command": reader.string("command") if known_type == "shell" else None,
        "script": script,
        "callable": function,
        "method": http.get("method", "GET"),
        "url": http.get("url"),
        "headers": http.get("headers", {}),
        "body": http.get("body"),
        "json": http.get("json"),
        "expect_status": http.get("expect_status"),
        "depends_on": reader.string_list(depends_key, "task ids"),
        "retries": retries,
        "retry_delay_secs": reader.number("retry_delay_secs", 1, minimum=0),
        "retry_max_delay_secs": reader.number("retry_max_delay_secs", 60, minimum=0),
        "backoff": backoff,
        "timeout_secs": _read_duration(reader),
        "env": reader.scalar_map("env"),
        "queue": reader.string("queue", "default"),
        "trigger_rule": reader.string("trigger_rule", "all_success", TRIGGER_RULES),
        "pool": _read_pool(reader),
    }


def _read_tasks(document: dict, dag: dict, errors: list[str]) -> list:
    tasks = document.get("tasks")
    if "tasks" not in document:
        errors.append("dag: missing required key 'tasks' (a list of tasks)")
    elif not isinstance(tasks, list):
        errors.append(f"dag: 'tasks' must be a list of tasks, got {_describe(tasks)}")
    elif not tasks:
        errors.append("dag: 'tasks' is empty; a DAG needs at least one task")
    result: list[dict] = []
    first_position: dict[str | None, int] = {}
    for position, task in enumerate(tasks if isinstance(tasks, list) else [], start=1):
        where = _task_label(task, position)
        if not isinstance(task, dict):
            errors.append(f"{where}: must be a mapping with 'id' and more, got {_describe(task)}")
            continue
        normalized = _read_task(task, where, dag, errors)
        if normalized["id"] in first_position and normalized["id"] is not None:
            earlier = first_position[normalized["id"]]
            errors.append(f"{where}: duplicate task id (also used by task #{earlier})")
        first_position.setdefault(normalized["id"], position)
        result.append(normalized)
    return result


# --- graph -------------------------------------------------------------------------------------


def _graph(spec: dict) -> nx.DiGraph:
    """Edges run upstream -> downstream; dependencies on unknown tasks are left out."""
    tasks = [task for task in spec["tasks"] if task["id"] is not None]
    graph = nx.DiGraph()
    graph.add_nodes_from(task["id"] for task in tasks)
    for task in tasks:
        graph.add_edges_from((up, task["id"]) for up in task["depends_on"] if up in graph)
    return graph


def _check_graph(spec: dict, errors: list[str]) -> None:
    known = {task["id"] for task in spec["tasks"]}
    for task in spec["tasks"]:
        for upstream in task["depends_on"]:
            if upstream not in known:
                close = difflib.get_close_matches(upstream, sorted(known), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                where = f"task '{task['id']}'" if task["id"] else "task"
                errors.append(f"{where}: depends_on names unknown task '{upstream}'{hint}")
    graph = _graph(spec)
    for component in nx.strongly_connected_components(graph):
        start = min(component)
        if len(component) == 1 and not graph.has_edge(start, start):
            continue
        names = [edge[0] for edge in nx.find_cycle(graph.subgraph(component), source=start)]
        first = names.index(min(names))  # start at the smallest id so the message is stable
        names = names[first:] + names[:first]
        errors.append(f"cycle: {' -> '.join(names + names[:1])}")


# --- entry point -------------------------------------------------------------------------------


def _unstorable_text(document: dict) -> list[str]:
    """Text the database cannot store (a NUL, a lone surrogate), each named where it is:
    `task 'load': 'command' contains a NUL character ...`."""
    errors = []
    for key, value in document.items():
        if key == "tasks" and isinstance(value, list):
            for position, task in enumerate(value, start=1):
                label = _task_label(task, position)
                for path, problem in boundary.unstorable(task):
                    errors.append(f"{label}: '{path}' {problem}" if path else f"{label}: {problem}")
            continue
        for path, problem in boundary.unstorable(value, str(key)):
            errors.append(f"dag: '{path}' {problem}")
    return errors


def _duplicate_key_errors(duplicates: list, document: dict, tasks: Any) -> list[str]:
    """Place each repeated YAML key: at the DAG level, in a task, or by line number."""
    owners = {id(document): "dag"} | {id(value): f"dag: '{key}'" for key, value in document.items()}
    if isinstance(tasks, list):
        for position, task in enumerate(tasks, start=1):
            owners[id(task)] = _task_label(task, position)
            if isinstance(task, dict):
                for key, value in task.items():
                    owners[id(value)] = f"{_task_label(task, position)}: '{key}'"
    return [
        f"{owners.get(id(mapping), f'line {line}')}: key '{key}' is given twice "
        f"(second time at line {line})"
        for mapping, key, line in duplicates
    ]


def parse_dag(text: str) -> DagSpec:
    """Parse and validate one DAG file; raise SpecError naming every problem found."""
    try:
        boundary.check_size(len(text.encode("utf-8", "surrogatepass")), "the DAG file")
    except boundary.LimitExceeded as exc:
        raise SpecError([f"dag: {exc}"]) from None
    document, duplicates = _load_yaml(text)
    if document is None:
        raise SpecError(["dag: the file is empty; it needs at least 'id' and 'tasks'"])
    if not isinstance(document, dict):
        raise SpecError([f"dag: the file must be a YAML mapping, got {_describe(document)}"])
    return parse_document(
        document, _duplicate_key_errors(duplicates, document, document.get("tasks"))
    )


def parse_document(document: dict, earlier_errors: list[str] | None = None) -> DagSpec:
    """Validate an already-loaded DAG mapping (from YAML, or built by the jobs API)."""
    errors = _unstorable_text(document)
    spec = _read_dag(document, errors)
    spec["tasks"] = _read_tasks(document, spec, errors)
    _check_graph(spec, errors)
    errors.extend(earlier_errors or [])
    if errors:
        raise SpecError(errors)
    return DagSpec.from_json(spec)
