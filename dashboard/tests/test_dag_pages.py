"""The DAG list (`/`) and the DAG page (`/dags/{dag_id}/`), with their pause, trigger and
backfill buttons: what each role sees and may do, the marks, graph and grid attributes,
the version diff, and a query count that does not grow with DAGs, runs or tasks."""

import time
from html import unescape
from html.parser import HTMLParser

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from dags.compiled import compiled_version
from dags.models import Dag
from dashboard import dag_pages, graph
from dashboard.tests.roles import texts
from runs.models import DagRun, TaskInstance
from runs.services import trigger_run
from runs.states import TaskState
from testkit.engine import submit

pytestmark = pytest.mark.django_db

ETL = """id: etl
name: ETL pipeline
description: moves rows
schedule: "0 * * * *"
timezone: Europe/Paris
params: {count: 1, label: nightly, flags: [a]}
tasks:
  - {id: extract, command: "true", queue: nobody-listens}
  - {id: load, command: "true", depends_on: [extract], queue: nobody-listens}
"""
ETL_V2 = ETL.replace('id: load, command: "true"', 'id: load, command: "echo v2"')
MANUAL = """id: manual-only
tasks:
  - {id: one, command: "true", queue: nobody-listens}
"""


class Elements(HTMLParser):
    """The attributes of every element of a page whose class list holds `css_class`."""

    def __init__(self, css_class: str):
        super().__init__()
        self.css_class, self.found = css_class, []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if self.css_class in (attributes.get("class") or "").split():
            self.found.append({"tag": tag, **attributes})


def elements(response, css_class: str) -> list[dict]:
    parser = Elements(css_class)
    parser.feed(response.content.decode())
    return parser.found


@pytest.fixture(autouse=True)
def fresh_caches():
    """Per-process caches keyed by version id: SQLite's rolled-back tests reuse ids."""
    compiled_version.cache_clear()
    graph._layout.cache_clear()


def dag_url(dag_id: str, name: str = "dag") -> str:
    return reverse(f"dashboard:{name}", kwargs={"dag_id": dag_id})


def set_states(run: DagRun, states: dict[str, str]) -> None:
    for task_id, state in states.items():
        TaskInstance.objects.filter(run=run, task_id=task_id).update(state=state)


# --- access -----------------------------------------------------------------------------


def test_anonymous_is_sent_to_login():
    submit(ETL)
    for url in ("/", dag_url("etl")):
        response = Client().get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/")
    response = Client().post(dag_url("etl", "dag-pause"))
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_viewer_sees_no_buttons_and_may_not_post(viewer):
    dag = submit(ETL)
    for url in ("/", dag_url("etl")):
        page = viewer.get(url)
        assert page.status_code == 200
        assert dag_url("etl", "dag-pause").encode() not in page.content
        assert dag_url("etl", "dag-trigger").encode() not in page.content
        assert dag_url("etl", "dag-backfill").encode() not in page.content
    for name in ("dag-pause", "dag-trigger", "dag-backfill"):
        assert viewer.post(dag_url("etl", name), {"start": "2024-01-01"}).status_code == 403
    dag.refresh_from_db()
    assert not dag.is_paused and DagRun.objects.count() == 0


def test_unknown_dag_is_404(viewer, operator):
    assert viewer.get(dag_url("nope")).status_code == 404
    assert operator.post(dag_url("nope", "dag-trigger")).status_code == 404


def test_posts_only(operator):
    submit(ETL)
    assert operator.get(dag_url("etl", "dag-trigger")).status_code == 405


# --- the list ---------------------------------------------------------------------------


def test_list_shows_schedule_next_run_and_last_runs_as_marks(viewer):
    dag = submit(ETL)
    submit(MANUAL)
    runs = [trigger_run(dag) for _ in range(12)]
    set_states(runs[-1], {"extract": TaskState.FAILED})
    DagRun.objects.filter(pk=runs[-1].pk).update(state="failed")
    page = viewer.get("/")
    html = page.content.decode()
    assert "0 * * * *" in html and "Europe/Paris" in html and "manual only" in html
    assert "ETL pipeline" in html
    rows = {row.dag.dag_id: row for row in page.context["rows"]}
    assert rows["etl"].next_run.endswith(("CET", "CEST"))  # in the DAG's zone
    marks = elements(page, "mark")
    assert len(marks) == dag_pages.LAST_RUNS  # the 10 newest of etl; manual-only has none
    newest = marks[0]
    assert newest["data-run-id"] == str(runs[-1].id) and newest["data-state"] == "failed"
    assert "state-failed" in newest["class"].split()
    assert {m["data-run-id"] for m in marks} == {str(r.id) for r in runs[2:]}
    assert f'href="{reverse("dashboard:run", kwargs={"run_id": runs[-1].id})}"' in html


def test_list_search_and_filters(viewer):
    submit(ETL)
    submit(MANUAL)
    paused = submit(MANUAL.replace("manual-only", "quiet"))
    Dag.objects.filter(pk=paused.pk).update(is_paused=True, name="Sleepy")
    gone = submit(MANUAL.replace("manual-only", "gone"))
    Dag.objects.filter(pk=gone.pk).update(is_active=False)

    def shown(query: str = "") -> list[str]:
        return [row.dag.dag_id for row in viewer.get("/" + query).context["rows"]]

    assert shown() == ["etl", "manual-only", "quiet"]
    assert shown("?q=PIPE") == ["etl"]  # the name "ETL pipeline" matches too
    assert shown("?q=sleep") == ["quiet"]
    assert shown("?status=paused") == ["quiet"]
    assert shown("?status=active") == ["etl", "manual-only"]
    assert shown("?status=all&deactivated=1") == ["etl", "gone", "manual-only", "quiet"]
    assert shown("?status=bogus") == ["etl", "manual-only", "quiet"]
    paused_page = viewer.get("/")
    assert paused_page.context["rows"][2].next_run == ""  # paused: no next run


def test_list_paginates(viewer, monkeypatch):
    monkeypatch.setattr(dag_pages, "PAGE_SIZE", 2)
    for n in range(5):
        submit(MANUAL.replace("manual-only", f"dag-{n}"))
    first = viewer.get("/?q=dag-")
    assert [row.dag.dag_id for row in first.context["rows"]] == ["dag-0", "dag-1"]
    assert b"page=2" in first.content and b"q=dag-" in first.content
    last = viewer.get("/?q=dag-&page=3")
    assert [row.dag.dag_id for row in last.context["rows"]] == ["dag-4"]


def test_operator_pauses_and_unpauses_from_the_list(operator):
    dag = submit(ETL)
    page = operator.get("/?q=etl")
    (button,) = [b for b in elements(page, "secondary") if b.get("data-action")]
    assert button["data-action"] == "pause"
    response = operator.post(dag_url("etl", "dag-pause"), {"paused": "true", "next": "/?q=etl"})
    assert response.status_code == 302 and response["Location"] == "/?q=etl"
    dag.refresh_from_db()
    assert dag.is_paused
    assert "DAG etl paused." in texts(response)
    assert operator.get("/?q=etl").context["rows"][0].next_run == ""
    # No `paused` field: a toggle; an outside `next` is not followed.
    response = operator.post(dag_url("etl", "dag-pause"), {"next": "https://evil.example/"})
    assert response["Location"] == dag_url("etl")
    dag.refresh_from_db()
    assert not dag.is_paused


def test_list_costs_the_same_queries_for_more_dags_and_runs(viewer):
    submit(ETL)
    with CaptureQueriesContext(connection) as few:
        viewer.get("/")
    for n in range(8):
        dag = submit(ETL.replace("id: etl", f"id: etl-{n}"))
        for _ in range(n + 3):
            trigger_run(dag)
    with CaptureQueriesContext(connection) as many:
        page = viewer.get("/")
    assert len(page.context["rows"]) == 9
    assert len(many) == len(few) <= 8
    print(f"\nDAG list, 9 DAGs with up to 10 runs each: {len(many)} queries")


# --- the DAG page -----------------------------------------------------------------------


def test_dag_page_header_graph_and_source(viewer):
    submit(ETL)
    page = viewer.get(dag_url("etl"))
    html = page.content.decode()
    assert "ETL pipeline" in html and "moves rows" in html and "Europe/Paris" in html
    nodes = elements(page, "node")
    assert [(n["data-task-id"], n["data-state"]) for n in nodes] == [
        ("extract", "none"),
        ("load", "none"),
    ]
    assert "id: etl" in html and "nobody-listens" in html  # the YAML source
    assert page.context["diff"] is None  # one version: nothing to compare


def test_graph_colors_tasks_by_the_latest_run(viewer):
    dag = submit(ETL)
    trigger_run(dag)
    latest = trigger_run(dag)
    set_states(latest, {"extract": TaskState.SUCCESS, "load": TaskState.RUNNING})
    nodes = elements(viewer.get(dag_url("etl")), "node")
    assert {n["data-task-id"]: n["data-state"] for n in nodes} == {
        "extract": "success",
        "load": "running",
    }


def test_grid_cells_carry_task_run_and_state_for_the_last_25_runs(viewer):
    dag = submit(ETL)
    runs = [trigger_run(dag) for _ in range(27)]
    set_states(runs[-1], {"extract": TaskState.FAILED, "load": TaskState.UPSTREAM_FAILED})
    page = viewer.get(dag_url("etl"))
    cells = elements(page, "cell")
    assert len(cells) == 25 * 2
    columns = [c["data-run-id"] for c in cells if c["data-task-id"] == "extract"]
    assert columns == [str(run.id) for run in reversed(runs[2:])]  # newest on the left
    first = cells[0]
    assert (first["data-task-id"], first["data-state"]) == ("extract", "failed")
    assert first["href"] == reverse(
        "dashboard:task", kwargs={"run_id": runs[-1].id, "task_id": "extract"}
    )
    assert "state-failed" in first["class"].split()
    rows = [c["data-task-id"] for c in cells[::25]]
    assert rows == ["extract", "load"]  # file order


def test_grid_gives_none_to_a_task_missing_from_a_runs_version(viewer):
    dag = submit(ETL)
    old = trigger_run(dag)
    three = ETL + '  - {id: report, command: "true", queue: nobody-listens}\n'
    new = trigger_run(submit(three))
    page = viewer.get(dag_url("etl"))
    cells = {(c["data-task-id"], c["data-run-id"]): c for c in elements(page, "cell")}
    assert cells[("report", str(old.id))]["data-state"] == "none"
    assert cells[("report", str(old.id))]["tag"] == "span"  # no instance to link to
    assert cells[("report", str(new.id))]["data-state"] == "queued"
    assert cells[("report", str(new.id))]["tag"] == "a"


def test_version_diff_shows_the_changed_line(viewer):
    submit(ETL)
    submit(ETL_V2)
    submit(ETL_V2.replace("moves rows", "moves more rows"))
    page = viewer.get(dag_url("etl"))
    diff = page.context["diff"]
    assert (diff.from_version, diff.to_version) == (2, 3)
    assert ("add", "+description: moves more rows") in diff.lines
    diff = viewer.get(dag_url("etl") + "?from=1&to=2").context["diff"]
    assert (diff.from_version, diff.to_version) == (1, 2)
    assert (
        "del",
        '-  - {id: load, command: "true", depends_on: [extract], queue: nobody-listens}',
    ) in diff.lines
    assert (
        "add",
        '+  - {id: load, command: "echo v2", depends_on: [extract], queue: nobody-listens}',
    ) in diff.lines
    page = viewer.get(dag_url("etl") + "?from=1&to=2")
    assert b'<span class="add">+  - {id: load, command: &quot;echo v2&quot;' in page.content
    fallback = viewer.get(dag_url("etl") + "?from=x&to=99").context["diff"]
    assert (fallback.from_version, fallback.to_version) == (2, 3)


# --- trigger and backfill ---------------------------------------------------------------


def test_trigger_form_is_prefilled_with_the_params_defaults(operator):
    submit(ETL.replace("label: nightly", 'label: "3"'))
    page = operator.get(dag_url("etl"))
    fields = {f.name: f.value for f in page.context["params"]}
    assert fields == {"count": "1", "label": '"3"', "flags": '["a"]'}
    assert b'name="param:count" value="1"' in page.content


def test_operator_triggers_with_params_parsed_as_the_cli_does(operator):
    submit(ETL)
    response = operator.post(
        dag_url("etl", "dag-trigger"),
        {"param:count": "3", "param:label": "hello world", "param:flags": "[1, 2]", "other": "x"},
    )
    run = DagRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard:run", kwargs={"run_id": run.id})
    assert run.params == {"count": 3, "label": "hello world", "flags": [1, 2]}
    assert run.triggered_by == "dashboard"
    operator.post(dag_url("etl", "dag-trigger"), {"param:count": "true", "param:label": '"7"'})
    second = DagRun.objects.order_by("-created_at").first()
    assert second.params == {"count": True, "label": "7", "flags": ["a"]}  # flags: default


def test_a_refused_trigger_says_why_and_creates_nothing(operator):
    dag = submit(ETL)
    Dag.objects.filter(pk=dag.pk).update(is_active=False)
    response = operator.post(dag_url("etl", "dag-trigger"))
    assert response["Location"] == dag_url("etl")
    assert any("deactivated" in text for text in texts(response))
    deep = "[" * 60 + "]" * 60
    Dag.objects.filter(pk=dag.pk).update(is_active=True)
    response = operator.post(dag_url("etl", "dag-trigger"), {"param:flags": deep})
    assert any("nested more than" in text for text in texts(response))
    assert DagRun.objects.count() == 0


def test_backfill_creates_runs_then_skips_them(operator):
    submit(ETL)
    window = {"start": "2024-01-01T00:00", "end": "2024-01-01T02:00"}  # Paris time
    response = operator.post(dag_url("etl", "dag-backfill"), window)
    assert response.status_code == 302 and response["Location"] == dag_url("etl")
    assert DagRun.objects.filter(triggered_by="backfill").count() == 3
    assert any("3 runs created, 0 ticks skipped" in text for text in texts(response))
    again = operator.post(dag_url("etl", "dag-backfill"), window)
    assert any("0 runs created, 3 ticks skipped" in text for text in texts(again))
    assert DagRun.objects.count() == 3


@pytest.mark.parametrize(
    ("window", "reason"),
    [
        ({"start": "2024-01-02", "end": "2024-01-01"}, "is before 'start'"),
        ({"start": "2024-01-01", "end": "2999-01-01"}, "in the future"),
        ({"start": "soon", "end": "2024-01-01"}, "not an ISO 8601 date"),
    ],
)
def test_a_bad_backfill_window_creates_nothing_and_says_why(operator, window, reason):
    submit(ETL)
    response = operator.post(dag_url("etl", "dag-backfill"), window)
    assert response["Location"] == dag_url("etl")
    assert any(reason in text for text in texts(response)), texts(response)
    assert DagRun.objects.count() == 0
    page = operator.get(dag_url("etl"))
    assert reason in unescape(page.content.decode())  # the message is shown on the DAG page


def test_backfill_of_an_unscheduled_dag_is_refused(operator):
    submit(MANUAL)
    page = operator.get(dag_url("manual-only"))
    assert dag_url("manual-only", "dag-backfill").encode() not in page.content
    response = operator.post(
        dag_url("manual-only", "dag-backfill"), {"start": "2024-01-01", "end": "2024-01-02"}
    )
    assert any("has no schedule" in text for text in texts(response))


# --- cost -------------------------------------------------------------------------------


def big_dag(dag_id: str, tasks: int) -> Dag:
    """A fan-out: one root and `tasks - 1` tasks depending on it."""
    lines = [f"id: {dag_id}", "tasks:", '  - {id: root, command: "true", queue: nobody-listens}']
    lines += [
        f'  - {{id: t{n:04}, command: "true", depends_on: [root], queue: nobody-listens}}'
        for n in range(1, tasks)
    ]
    return submit("\n".join(lines) + "\n")


def test_dag_page_costs_the_same_queries_for_1000_tasks_and_25_runs(viewer):
    small = submit(MANUAL)
    trigger_run(small)
    viewer.get(dag_url("manual-only"))  # warm the per-process caches (spec, layout)
    with CaptureQueriesContext(connection) as few:
        viewer.get(dag_url("manual-only"))
    big = big_dag("big", 1000)
    for _ in range(25):
        trigger_run(big)
    viewer.get(dag_url("big"))
    started = time.perf_counter()
    with CaptureQueriesContext(connection) as many:
        page = viewer.get(dag_url("big"))
    elapsed = time.perf_counter() - started
    assert len(elements(page, "cell")) == 25 * 1000
    assert len(elements(page, "node")) == 1000
    assert len(many) == len(few) <= 8
    print(f"\nDAG page, 1,000 tasks x 25 runs: {len(many)} queries, {elapsed * 1000:.0f} ms")
    assert elapsed < 1.5  # well under 0.5 s on a quiet machine; room for a loaded one
