"""What the DAG list and DAG pages show (dashboard/views/dags.py): their queries, the grid,
the last-runs marks, the version diff and the trigger form's params.

Each page costs a fixed number of queries, whatever the number of DAGs, runs or tasks:
the last runs of every DAG on a list page come in one query, the task instances of the
grid's runs in another, and the grid's cells are written here rather than by a template
loop (25,000 cells for a 1,000-task DAG).
"""

from __future__ import annotations

import functools
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from django.core.paginator import Page, Paginator
from django.db.models import F, Q, QuerySet, TextField, Window
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Cast, RowNumber
from django.http import QueryDict
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from dags.compiled import CompiledDag, compiled_version
from dags.models import Dag
from runs import scheduler
from runs.models import DagRun, TaskInstance
from runs.states import TaskState

from .graph import layout, render_svg
from .params_form import param_fields
from .versions import version_diff, versions

LAST_RUNS = 10  # marks per DAG on the list page
GRID_RUNS = 25  # columns of the DAG page's grid
PAGE_SIZE = 50  # DAGs per list page
NO_STATE = "none"  # a task without an instance (no run yet, or not in that run's version)
STATUSES = {"all": "Active and paused", "active": "Active (unpaused)", "paused": "Paused"}


# --- links ------------------------------------------------------------------------------


class Links:
    """URLs of run and task pages, made by substitution: reverse() once, not once a cell."""

    _RUN = str(uuid.UUID(int=0))
    _TASK = "~task~"  # no task id starts with '~' (CONTRACT section 1)

    def __init__(self) -> None:
        self._run_url = reverse("dashboard:run", kwargs={"run_id": self._RUN})
        task_url = reverse("dashboard:task", kwargs={"run_id": self._RUN, "task_id": self._TASK})
        self._task_before, self._task_after = task_url.split(self._TASK)

    def run(self, run_id: uuid.UUID | str) -> str:
        """The run page's path."""
        return self._run_url.replace(self._RUN, str(run_id))

    def task_parts(self, run_id: uuid.UUID | str) -> tuple[str, str]:
        """The task pages' path of one run, before and after the (quoted) task id."""
        return self._task_before.replace(self._RUN, str(run_id)), self._task_after

    def task(self, run_id: uuid.UUID | str, task_id: str) -> str:
        """The task page's path (a task instance: run and task id)."""
        before, after = self.task_parts(run_id)
        return before + quote(task_id, safe="") + after


def in_zone(moment: datetime | None, zone: str) -> str:
    """`moment` as the wall-clock time of `zone`, to the minute ("2024-05-01 02:30 CEST")."""
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z") if moment else ""


# --- the DAG list -------------------------------------------------------------------------


@dataclass(frozen=True)
class DagListFilter:
    """The list page's GET params: `q` (dag_id or name contains), `status` (a STATUSES
    key: active = unpaused) and `deactivated` (1: show deactivated DAGs too)."""

    search: str = ""
    status: str = "all"
    deactivated: bool = False

    @classmethod
    def from_query(cls, query: QueryDict) -> DagListFilter:
        """The filter a request asks for; an unknown status reads as "all"."""
        status = query.get("status", "all")
        return cls(
            search=query.get("q", "").strip(),
            status=status if status in STATUSES else "all",
            deactivated=query.get("deactivated") in ("1", "on", "true"),
        )

    @property
    def choices(self) -> Mapping[str, str]:
        """The status filter's options: value -> label."""
        return STATUSES

    def apply(self, dags: QuerySet[Dag]) -> QuerySet[Dag]:
        """`dags` narrowed to what the filter lets through."""
        if not self.deactivated:
            dags = dags.filter(is_active=True)
        if self.status != "all":
            dags = dags.filter(is_paused=self.status == "paused")
        if self.search:
            dags = dags.filter(Q(dag_id__icontains=self.search) | Q(name__icontains=self.search))
        return dags


@dataclass(frozen=True)
class RunMark:
    """One run as a colored mark: which run, its state, its tick (UTC) and its page."""

    run_id: uuid.UUID
    state: str
    logical_date: datetime
    url: str


@dataclass(frozen=True)
class DagRow:
    """One line of the list: the DAG, its schedule, next run (text in its zone, "" when
    none) and its last runs, newest first."""

    dag: Dag
    schedule: str | None
    timezone: str
    next_run: str
    marks: list[RunMark]


def dag_list_page(list_filter: DagListFilter, page_number: str | None) -> tuple[Page, list[DagRow]]:
    """A page of PAGE_SIZE DAGs by dag_id, and their rows: three queries (count, DAGs,
    last runs)."""
    dags = list_filter.apply(Dag.objects.filter(kind=Dag.Kind.DAG)).annotate(
        # Read from the stored spec in the same query, not by parsing each DAG's spec.
        spec_schedule=KeyTransform("schedule", "current_version__spec"),
        spec_timezone=KeyTransform("timezone", "current_version__spec"),
    )
    page = Paginator(dags.order_by("dag_id"), PAGE_SIZE).get_page(page_number)
    marks = last_runs([dag.pk for dag in page.object_list], Links())
    rows = [_dag_row(dag, marks.get(dag.pk, [])) for dag in page.object_list]
    return page, rows


def _dag_row(dag: Any, marks: list[RunMark]) -> DagRow:
    zone = dag.spec_timezone or "UTC"
    # As the API: no next run while paused or deactivated.
    scheduled = dag.is_active and not dag.is_paused
    return DagRow(
        dag=dag,
        schedule=dag.spec_schedule,
        timezone=zone,
        next_run=in_zone(dag.next_run_at, zone) if scheduled else "",
        marks=marks,
    )


def last_runs(
    dag_pks: list[int], links: Links, per_dag: int = LAST_RUNS
) -> dict[int, list[RunMark]]:
    """Dag pk -> its last `per_dag` runs, newest first: one query for all the DAGs."""
    if not dag_pks:
        return {}
    newest_first = Window(
        RowNumber(),
        partition_by=[F("dag_id")],
        order_by=[F("created_at").desc(), F("id").desc()],
    )
    ranked = (
        DagRun.objects.filter(dag_id__in=dag_pks)
        .annotate(rank=newest_first)
        .filter(rank__lte=per_dag)
        .order_by("dag_id", "rank")
        .values_list("dag_id", "id", "state", "logical_date")
    )
    marks: dict[int, list[RunMark]] = defaultdict(list)
    for dag_pk, run_id, state, logical_date in ranked:
        marks[dag_pk].append(RunMark(run_id, state, logical_date, links.run(run_id)))
    return marks


# --- the DAG page -------------------------------------------------------------------------


def get_dag(dag_id: str) -> Dag:
    """The DAG with its current version (without its spec: compiled_version() caches
    that); 404 when there is none."""
    dags = Dag.objects.select_related("current_version").defer("current_version__spec")
    return get_object_or_404(dags, dag_id=dag_id, current_version__isnull=False)


def compiled(dag: Dag) -> CompiledDag:
    """The typed spec of the DAG's current version (cached per process)."""
    return compiled_version(dag.current_version_id)


@dataclass(frozen=True)
class GridColumn:
    """One run of the grid: its id, state, tick (UTC), who triggered it, its page, and
    its task pages' path around the quoted task id (Links.task_parts)."""

    run_id: str
    state: str
    logical_date: datetime
    triggered_by: str
    url: str
    task_url: tuple[str, str]


@dataclass(frozen=True)
class Grid:
    """The last runs × the tasks: `columns` newest first (left), `body` the rows' HTML
    (one <tr> per task of the current version, in file order), `latest` the state of each
    task in the newest run (what the graph shows)."""

    columns: list[GridColumn]
    body: SafeString
    latest: dict[str, str]


def grid(dag: Dag, tasks: list[str], links: Links, size: int = GRID_RUNS) -> Grid:
    """The grid of the DAG's last `size` runs: two queries (runs, their task instances)."""
    runs = DagRun.objects.filter(dag=dag).order_by("-created_at", "-id")[:size]
    columns = [
        _column(links, *run)
        for run in runs.values_list("id", "state", "logical_date", "triggered_by")
    ]
    states: dict[str, dict[str, str]] = {column.run_id: {} for column in columns}
    if columns:
        # Run ids as text, so that 25,000 rows parse no UUID each: as the database writes
        # them, with dashes (PostgreSQL) or without (SQLite).
        by_text = {text: states[key] for key in states for text in (key, key.replace("-", ""))}
        instances = TaskInstance.objects.filter(run_id__in=list(states)).values_list(
            Cast("run_id", TextField()), "task_id", "state"
        )
        for run_id, task_id, state in instances.order_by():
            by_text[run_id][task_id] = state
    body = mark_safe("".join(_grid_row(task_id, columns, states) for task_id in tasks))  # noqa: S308
    return Grid(columns=columns, body=body, latest=states[columns[0].run_id] if columns else {})


def _column(
    links: Links, run_id: uuid.UUID, state: str, logical_date: datetime, triggered_by: str
) -> GridColumn:
    before, after = links.task_parts(run_id)
    return GridColumn(
        run_id=str(run_id),
        state=state,
        logical_date=logical_date,
        triggered_by=triggered_by,
        url=links.run(run_id),
        task_url=(str(escape(before)), str(escape(after))),  # escaped once, not per cell
    )


def _grid_row(
    task_id: str, columns: list[GridColumn], states: Mapping[str, Mapping[str, str]]
) -> str:
    """One task's <tr>: a cell per run, a link to the task instance's page when there is
    one (a span of state `none` when the run has no such task); every value escaped."""
    task, in_url = escape(task_id), quote(task_id, safe="")
    cells = [f'<tr data-task-id="{task}"><th scope="row" title="{task}">{task}</th>']
    for column in columns:
        state = states[column.run_id].get(task_id)
        if state is None:  # not in that run's version: nothing to link to
            cells.append(
                f'<td><span class="cell state-{NO_STATE}" data-task-id="{task}"'
                f' data-run-id="{column.run_id}" data-state="{NO_STATE}"></span></td>'
            )
            continue
        state = _escaped(state)
        before, after = column.task_url
        cells.append(
            f'<td><a href="{before}{in_url}{after}" class="cell state-{state}"'
            f' data-task-id="{task}" data-run-id="{column.run_id}" data-state="{state}"></a></td>'
        )
    cells.append("</tr>")
    return "".join(cells)


@functools.cache
def _escaped(text: str) -> str:
    """escape() of a value of few kinds (a state), once each."""
    return str(escape(text))


def dag_page(dag: Dag, query: QueryDict) -> dict[str, Any]:
    """The DAG page's context: the graph colored by the latest run, the grid, versions
    and their diff, the source, the trigger form. Four queries at most, whatever the size
    of the DAG (runs, instances, versions, the diffed sources)."""
    spec = compiled(dag)
    links = Links()
    runs = grid(dag, list(spec.tasks), links)
    latest = runs.columns[0] if runs.columns else None
    task_links = {t: links.task(latest.run_id, t) for t in runs.latest} if latest else None
    all_versions = versions(dag)
    return {
        "dag": dag,
        "spec": spec.spec,
        "next_run": in_zone(dag.next_run_at, spec.spec.timezone)
        if dag.is_active and not dag.is_paused
        else "",
        "graph": render_svg(layout(spec), runs.latest, links=task_links),
        "latest_run": latest,
        "grid": runs,
        "versions": all_versions,
        "diff": version_diff(dag, [number for number, _ in all_versions], query),
        "params": param_fields(spec.spec),
        "states": [*TaskState.values, NO_STATE],  # the grid's legend
    }


def wanted_pause(form: QueryDict, dag: Dag) -> bool:
    """Whether the pause button asks to pause: its `paused` field ("true"/"false"), or
    the opposite of the DAG's state when it has none."""
    asked = form.get("paused", "").lower()
    return asked in ("true", "1", "on") if asked else not dag.is_paused


# --- versions -----------------------------------------------------------------------------


def backfill(dag: Dag, start: str, end: str) -> str:
    """Backfill [start, end] (ISO dates or date-times, naive ones in the DAG's zone) and
    say what it did. Raises scheduler.BackfillError or services.TriggerError, having
    created nothing."""
    zone = compiled(dag).spec.timezone
    first = scheduler.window_edge(start, zone, "start")
    last = scheduler.window_edge(end, zone, "end")
    done = scheduler.backfill(dag, first, last)
    created, skipped = len(done.created), len(done.skipped)
    return (
        f"Backfill of {dag.dag_id} from {in_zone(first, zone)} to {in_zone(last, zone)}: "
        f"{created} run{'s' * (created != 1)} created, "
        f"{skipped} tick{'s' * (skipped != 1)} skipped (already had a run)."
    )
