"""The typed spec of a DAG: what dags/spec.py's parser returns and the engine reads.

Stored as JSON (DagVersion.spec): to_json() is the stored dict, from_json() reads any
stored version back. A key that older versions did not store takes its field's default,
which is the default the parser gives (CONTRACT section 1).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .cron import CronSchedule


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """One task of a DAG, validated and normalized."""

    id: str
    """Unique within the DAG; matches ID_PATTERN."""
    name: str
    """Display name; the id when the file gives none."""
    type: str = "shell"
    """Which executor runs it: one of TASK_TYPES."""
    command: str | None = None
    """Shell tasks: the command line, run with /bin/sh -c."""
    script: str | None = None
    """Python tasks: a script path, resolved by the worker against its DAGs folder."""
    callable: str | None = None
    """Python tasks: `package.module:function` to import and call."""
    method: str = "GET"
    """HTTP tasks: the request method, upper-case."""
    url: str | None = None
    """HTTP tasks: the URL (http:// or https://)."""
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """HTTP tasks: request headers, values as text."""
    body: str | None = None
    """HTTP tasks: a raw request body."""
    json: Any = None
    """HTTP tasks: a JSON request body (any JSON value); None for none."""
    expect_status: tuple[int, ...] | None = None
    """HTTP tasks: the status codes that count as success; None for any 2xx."""
    depends_on: tuple[str, ...] = ()
    """Ids of the upstream tasks, in file order, without repeats."""
    retries: int = 0
    """How many times a failed attempt is retried (so 1 + retries tries in all)."""
    retry_delay_secs: float = 1
    """Base delay in seconds: retry k waits this * 2^(k-1) (exponential) or this (fixed)."""
    retry_max_delay_secs: float = 60
    """Seconds a retry waits at most, whatever the backoff (before a +-10% jitter)."""
    backoff: str = "exponential"
    """How the delay grows between retries: one of BACKOFFS."""
    timeout_secs: float = 3600
    """Seconds an attempt may run before it is stopped (a failed attempt)."""
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Environment variables added for shell commands and python scripts."""
    queue: str = "default"
    """The Celery queue its attempts are sent to."""
    trigger_rule: str = "all_success"
    """What its upstream tasks must have done for it to run: one of TRIGGER_RULES."""
    pool: str | None = None
    """The pool (dags.Pool) whose slots its attempts take; None: no pool."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskSpec:
        """A task as stored (TaskSpec.to_json(), or an older version's dict)."""
        values = _known_fields(cls, data)
        values.setdefault("name", data["id"])
        values["depends_on"] = tuple(data.get("depends_on") or ())
        values["headers"] = dict(data.get("headers") or {})
        values["env"] = dict(data.get("env") or {})
        statuses = data.get("expect_status")
        values["expect_status"] = tuple(statuses) if statuses is not None else None
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The task as stored: JSON types only (lists, not tuples)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data.update(
            headers=dict(self.headers),
            expect_status=list(self.expect_status) if self.expect_status is not None else None,
            depends_on=list(self.depends_on),
            env=dict(self.env),
        )
        return data


@dataclass(frozen=True, kw_only=True)
class DagSpec:
    """A DAG, validated and normalized: its settings and its tasks in file order."""

    id: str
    """Unique among DAGs; matches ID_PATTERN."""
    name: str
    """Display name; the id when the file gives none."""
    description: str = ""
    """Free text; empty when the file gives none."""
    schedule: str | None = None
    """The schedule as the file wrote it (echoed by the API); None for manual runs only."""
    cron: str | None = None
    """The schedule as a 5-field cron line (what beat runs on); None for manual runs only."""
    timezone: str = "UTC"
    """IANA time zone name the cron line and a naive start_date are read in."""
    catchup: bool = False
    """Whether ticks missed since start_date get their runs."""
    start_date: str | None = None
    """The first tick considered: ISO 8601 date-time with its UTC offset; None: none given."""
    end_date: str | None = None
    """The last tick considered (a tick exactly at it runs), like start_date; None: none."""
    concurrency_policy: str = "allow"
    """A scheduled tick while an earlier run is unfinished: allow, forbid (skip) or replace."""
    run_timeout_secs: float | None = None
    """Seconds a run may take from its start; past it the run fails. None: no limit."""
    max_active_runs: int = 16
    """Runs of this DAG in flight at once, at most."""
    max_active_tasks: int | None = None
    """Task instances of one run running at once, at most; None for no limit."""
    default_retries: int = 0
    """The retries of tasks that do not give their own (already applied to `tasks`)."""
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Default run params (a JSON object); a run's own params are merged over them."""
    tasks: tuple[TaskSpec, ...] = ()
    """The tasks, in file order."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DagSpec:
        """A DAG as stored (DagSpec.to_json(), or an older version's dict)."""
        values = _known_fields(cls, data)
        values.setdefault("name", data["id"])
        if "cron" not in data:  # stored before `cron`: `schedule` then held the cron line
            values["cron"] = data.get("schedule")
        values["params"] = dict(data.get("params") or {})
        values["tasks"] = tuple(TaskSpec.from_json(task) for task in data.get("tasks") or ())
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The DAG as stored in DagVersion.spec: JSON types only (lists, not tuples)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data.update(params=dict(self.params), tasks=[task.to_json() for task in self.tasks])
        return data

    def cron_schedule(self) -> CronSchedule | None:
        """The schedule's ticks (dags/cron.py); None for manual runs only."""
        return CronSchedule(self.cron, self.timezone) if self.cron else None

    @property
    def start(self) -> datetime | None:
        """start_date as an aware datetime."""
        return datetime.fromisoformat(self.start_date) if self.start_date else None

    @property
    def end(self) -> datetime | None:
        """end_date as an aware datetime."""
        return datetime.fromisoformat(self.end_date) if self.end_date else None

    def task(self, task_id: str) -> TaskSpec:
        """The task with this id; KeyError if there is none."""
        return self._tasks_by_id[task_id]

    @functools.cached_property
    def _tasks_by_id(self) -> dict[str, TaskSpec]:
        return {task.id: task for task in self.tasks}

    @functools.cached_property
    def downstream(self) -> dict[str, tuple[str, ...]]:
        """Task id -> ids of the tasks that depend on it directly, in file order."""
        downstream: dict[str, list[str]] = {task.id: [] for task in self.tasks}
        for task in self.tasks:
            for upstream in task.depends_on:
                downstream[upstream].append(task.id)
        return {task_id: tuple(ids) for task_id, ids in downstream.items()}


def _known_fields(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """The items of `data` that are fields of the dataclass `cls`; other keys are ignored."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {key: value for key, value in data.items() if key in names}
