"""What the run pages show, read in a fixed number of queries: the run list (filters and
keyset pages), a run's task rows, graph and Gantt timeline, a task's attempts, and the
forms of the repair buttons. The views in dashboard/views/runs.py only render these."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any
from urllib.parse import quote
from uuid import UUID

from django import forms
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Q, QuerySet
from django.http import QueryDict
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.utils.http import urlencode
from django.utils.safestring import SafeString

from dags.compiled import compiled_version
from runs import repair
from runs.enums import RunState, TaskState
from runs.models import DagRun, TaskAttempt, TaskInstance

from .gantt import Gantt, format_duration, gantt, task_spans
from .graph import layout, render_svg

RUNS_PER_PAGE = 50
ATTEMPTS_PER_PAGE = 10  # each carries up to two 16,000-character output tails
ERROR_EXCERPT_CHARS = 120


def elapsed(started: datetime | None, finished: datetime | None, now: datetime) -> str:
    """From `started` to `finished` (to `now` while unfinished), formatted; "" unstarted."""
    if started is None:
        return ""
    return format_duration(((finished or now) - started).total_seconds())


def pretty_json(value: Any) -> str:
    """A JSON value (params, a task's output) indented for a <pre>."""
    return json.dumps(value, indent=2, sort_keys=True, cls=DjangoJSONEncoder)


class Context:
    """A page's dataclass as a template context: its fields, shallowly (no copies)."""

    def context(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


# --- the run list ------------------------------------------------------------------------


@dataclass(frozen=True)
class RunFilters:
    """The run list's GET filters; `problem` says why a given value was not applied."""

    dag_id: str = ""
    state: str = ""
    problem: str = ""

    @classmethod
    def from_query(cls, query: QueryDict) -> RunFilters:
        dag_id, state = query.get("dag_id", "").strip(), query.get("state", "").strip()
        if state and state not in RunState.values:
            problem = f"unknown state '{state}'; one of {', '.join(RunState.values)}"
            return cls(dag_id=dag_id, problem=problem)
        return cls(dag_id=dag_id, state=state)

    def apply(self, runs: QuerySet[DagRun]) -> QuerySet[DagRun]:
        if self.dag_id:
            runs = runs.filter(dag__dag_id=self.dag_id)
        return runs.filter(state=self.state) if self.state else runs

    def query(self, **cursor: str) -> str:
        """The filters and a page cursor as a query string (without the "?")."""
        given = {"dag_id": self.dag_id, "state": self.state, **cursor}
        return urlencode({key: value for key, value in given.items() if value})


@dataclass(frozen=True)
class Cursor:
    """A place in the list ordered newest first: (created_at, id), as in a link's query."""

    created_at: datetime
    id: UUID

    @classmethod
    def of(cls, run: DagRun) -> Cursor:
        return cls(run.created_at, run.id)

    @classmethod
    def parse(cls, token: str | None) -> Cursor | None:
        """The cursor of a link's token; None for none or a mangled one (the first page)."""
        stamp, _, run_id = (token or "").rpartition("~")
        try:
            created_at = parse_datetime(stamp)
            return cls(created_at, UUID(run_id)) if created_at else None
        except ValueError:
            return None

    def token(self) -> str:
        return f"{self.created_at.isoformat()}~{self.id}"

    def older(self) -> Q:
        # The `lte` conjunct bounds an index scan on created_at; the rest breaks ties.
        tie = Q(created_at__lt=self.created_at) | Q(id__lt=self.id)
        return Q(created_at__lte=self.created_at) & tie

    def newer(self) -> Q:
        tie = Q(created_at__gt=self.created_at) | Q(id__gt=self.id)
        return Q(created_at__gte=self.created_at) & tie


@dataclass(frozen=True)
class RunRow:
    run: DagRun
    duration: str


@dataclass(frozen=True)
class RunListPage(Context):
    """One page of runs, newest first, and the query strings of its neighbours (None at
    an end). No COUNT: each page reads RUNS_PER_PAGE + 1 rows from a keyset cursor, so
    its cost does not grow with the table (nor with how deep the page is)."""

    filters: RunFilters
    rows: list[RunRow]
    newer: str | None
    older: str | None
    states: list[str]


def run_list_page(query: QueryDict, now: datetime) -> RunListPage:
    """The page of the run list that `query` (filters, `before` or `after`) asks for."""
    filters = RunFilters.from_query(query)
    runs = filters.apply(DagRun.objects.select_related("dag").defer("params"))
    after = Cursor.parse(query.get("after"))
    before = None if after else Cursor.parse(query.get("before"))
    if after:
        found = list(runs.filter(after.newer()).order_by("created_at", "id")[: RUNS_PER_PAGE + 1])
        more_newer, more_older = len(found) > RUNS_PER_PAGE, True
        found = found[:RUNS_PER_PAGE][::-1]
    else:
        if before:
            runs = runs.filter(before.older())
        found = list(runs.order_by("-created_at", "-id")[: RUNS_PER_PAGE + 1])
        more_newer, more_older = before is not None, len(found) > RUNS_PER_PAGE
        found = found[:RUNS_PER_PAGE]
    return RunListPage(
        filters=filters,
        rows=[RunRow(run, elapsed(run.started_at, run.finished_at, now)) for run in found],
        newer=filters.query(after=Cursor.of(found[0]).token()) if found and more_newer else None,
        older=filters.query(before=Cursor.of(found[-1]).token()) if found and more_older else None,
        states=list(RunState.values),
    )


# --- a run's page ------------------------------------------------------------------------


def get_run(run_id: UUID) -> DagRun:
    """The run with its DAG (one query); 404 for an unknown one."""
    return get_object_or_404(DagRun.objects.select_related("dag"), pk=run_id)


def task_urls(run_id: UUID, task_ids: Iterable[str]) -> dict[str, str]:
    """Task id -> its task page, with one reverse() for the lot (runs have many tasks)."""
    pattern = reverse("dashboard:task", args=[run_id, "TASK"])
    head, _, tail = pattern.rpartition("TASK")
    return {task_id: f"{head}{quote(task_id, safe='')}{tail}" for task_id in task_ids}


@dataclass(frozen=True)
class TaskRow:
    instance: TaskInstance
    url: str
    duration: str
    error_excerpt: str


@dataclass(frozen=True)
class RunView(Context):
    """What the run page and its live partial show. `live`: the run is unfinished, so
    the partial polls; `can_rerun`: it is finished with tasks a rerun would run."""

    run: DagRun
    tasks: list[TaskRow]
    graph: SafeString
    gantt: Gantt
    live: bool
    can_rerun: bool
    duration: str
    task_states: list[str]


def run_view(run: DagRun, now: datetime) -> RunView:
    """The run's tasks in file order with their attempts: two queries, whatever the size
    (the compiled spec is cached per version)."""
    compiled = compiled_version(run.dag_version_id)
    instances = {ti.task_id: ti for ti in run.task_instances.defer("output", "live_output")}
    attempts = attempts_by_instance(run.id)
    order = [t for t in compiled.tasks if t in instances] + sorted(
        set(instances) - set(compiled.tasks)
    )
    urls = task_urls(run.id, order)
    timeline = [
        (t, urls[t], task_spans(instances[t], attempts.get(instances[t].pk, []))) for t in order
    ]
    finished = run.state in RunState.FINAL
    return RunView(
        run=run,
        tasks=[task_row(instances[t], urls[t], now) for t in order],
        graph=render_svg(layout(compiled), {t: i.state for t, i in instances.items()}, links=urls),
        gantt=gantt(timeline, now),
        live=not finished,
        can_rerun=finished and any(i.state in repair.RERUN for i in instances.values()),
        duration=elapsed(run.started_at, run.finished_at, now),
        task_states=list(TaskState.values),
    )


def attempts_by_instance(run_id: UUID) -> dict[int, list[TaskAttempt]]:
    """Instance pk -> its attempts in try order, without their output (one query)."""
    found: dict[int, list[TaskAttempt]] = defaultdict(list)
    rows = TaskAttempt.objects.filter(task_instance__run_id=run_id).only(
        "task_instance_id", "try_number", "state", "started_at", "finished_at"
    )
    for attempt in rows.order_by("task_instance_id", "try_number"):
        found[attempt.task_instance_id].append(attempt)
    return found


def task_row(instance: TaskInstance, url: str, now: datetime) -> TaskRow:
    first_line = instance.error.strip().splitlines()[0] if instance.error.strip() else ""
    excerpt = first_line[:ERROR_EXCERPT_CHARS]
    if len(first_line) > ERROR_EXCERPT_CHARS or len(instance.error.strip()) > len(first_line):
        excerpt += "…"
    return TaskRow(instance, url, elapsed(instance.started_at, instance.finished_at, now), excerpt)


# --- a task's page -----------------------------------------------------------------------


def get_instance(run_id: UUID, task_id: str, *, tail_only: bool = False) -> TaskInstance:
    """The run's instance of `task_id` with its run and DAG (one query); 404 for an
    unknown run or task. `tail_only` reads just what the live tail and buttons need."""
    rows = TaskInstance.objects.select_related("run__dag")
    if tail_only:
        rows = TaskInstance.objects.only("run_id", "task_id", "state", "try_number", "live_output")
    return get_object_or_404(rows, run_id=run_id, task_id=task_id)


@dataclass(frozen=True)
class AttemptRow:
    attempt: TaskAttempt
    duration: str


@dataclass(frozen=True)
class TaskView(Context):
    """A task's page: the instance, a page of its attempts newest first (`older`,
    `newer`: query strings of the neighbouring pages, None at an end), and whether it
    is `running` (the live tail polls)."""

    instance: TaskInstance
    run: DagRun
    attempts: list[AttemptRow]
    older: str | None
    newer: str | None
    running: bool
    duration: str
    output_json: str


def task_view(instance: TaskInstance, query: QueryDict, now: datetime) -> TaskView:
    """The page of attempts that `query` asks for (`before`: a try number), one query."""
    rows = instance.attempts.order_by("-try_number")
    before = query.get("before", "")
    if before.isdigit():
        rows = rows.filter(try_number__lt=int(before))
    found = list(rows[: ATTEMPTS_PER_PAGE + 1])
    page = found[:ATTEMPTS_PER_PAGE]
    more = len(found) > ATTEMPTS_PER_PAGE
    return TaskView(
        instance=instance,
        run=instance.run,
        attempts=[AttemptRow(a, elapsed(a.started_at, a.finished_at, now)) for a in page],
        older=urlencode({"before": page[-1].try_number}) if more else None,
        newer="" if before.isdigit() else None,  # "": the first page, no query
        running=instance.state == TaskState.RUNNING,
        duration=elapsed(instance.started_at, instance.finished_at, now),
        output_json=pretty_json(instance.output),
    )


# --- the repair buttons' forms -----------------------------------------------------------


class RepairForm(forms.Form):
    """What a repair button posts: the task's state and try number as the page showed
    them (a task that moved on since is a conflict), and which page to go back to."""

    seen_state = forms.ChoiceField(choices=TaskState.choices, required=False)
    seen_try = forms.IntegerField(min_value=0, required=False)
    back = forms.ChoiceField(choices=[("run", "run"), ("task", "task")], required=False)

    def seen(self) -> repair.Seen:
        return repair.Seen(self.cleaned_data["seen_state"] or None, self.cleaned_data["seen_try"])

    def problems(self) -> str:
        return "; ".join(f"{name}: {' '.join(errs)}" for name, errs in self.errors.items())


class ClearForm(RepairForm):
    downstream = forms.BooleanField(required=False)  # the button's checkbox, on by default


class MarkForm(RepairForm):
    state = forms.ChoiceField(choices=[(state, state) for state in repair.MARKABLE])
