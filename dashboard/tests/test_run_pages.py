"""The run pages (CONTRACT section 10): the run list, a run's page and its live partial, a
task's page and its live tail, and their buttons, which change a run as the API does."""

from __future__ import annotations

import re
import time
import uuid
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from dags.models import Dag
from dashboard import gantt, run_pages
from dashboard.tests.roles import login
from runs import repair, services
from runs.enums import RunState, TaskState
from runs.models import DagRun, Repair, TaskAttempt, TaskInstance
from testkit.engine import run_dag, submit

pytestmark = pytest.mark.django_db

# Nothing consumes `nobody-listens`: the tasks stay where a test or a repair puts them.
PARKED = """
id: parked
tasks:
  - {id: a, command: "true", queue: nobody-listens}
  - {id: b, command: "true", depends_on: [a], queue: nobody-listens}
  - {id: c, command: "true", depends_on: [a], queue: nobody-listens}
"""


def parked_run(yaml_text: str = PARKED) -> DagRun:
    return services.trigger_run(submit(yaml_text))


def run_url(run: DagRun, name: str = "run") -> str:
    return reverse(f"dashboard:{name}", args=[run.id])


def task_url(run: DagRun, task_id: str, name: str = "task") -> str:
    return reverse(f"dashboard:{name}", args=[run.id, task_id])


def html(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def node_states(page: str) -> dict[str, str]:
    """Task id -> data-state of each graph node."""
    nodes = re.findall(r'<g class="node [^"]*" data-task-id="([^"]+)" data-state="([^"]+)"', page)
    return dict(nodes)


def states(run: DagRun) -> dict[str, tuple[str, int]]:
    return {ti.task_id: (ti.state, ti.try_number) for ti in run.task_instances.all()}


def message(response) -> str:
    """The message the request added ("level: text"); earlier unread ones come before it."""
    return [f"{m.level_tag}: {m}" for m in get_messages(response.wsgi_request)][-1]


def insert_runs(dag: Dag, count: int, *, state: str = "success", newest=None) -> None:
    """`count` finished runs of `dag`, one second apart, newest at `newest` (one INSERT)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO runs_dagrun (id, dag_id, dag_version_id, state, triggered_by,"
            " logical_date, params, tasks_unfinished, tasks_failed, created_at, started_at,"
            " finished_at)"
            " SELECT gen_random_uuid(), %s, %s, %s, 'schedule', t, '{}', 0, 0, t, t,"
            "  t + interval '3 seconds'"
            " FROM (SELECT %s - n * interval '1 second' AS t FROM generate_series(0, %s) n) s",
            [dag.pk, dag.current_version_id, state, newest or timezone.now(), count - 1],
        )


def listed(page: str) -> list[str]:
    return re.findall(r'<tr class="run-row" data-run-id="([^"]+)"', page)


def follow(client: Client, page: str, rel: str) -> str:
    (query,) = re.findall(rf'rel="{rel}" href="\?([^"]+)"', page)
    return html(client.get("/runs/?" + query.replace("&amp;", "&")))


# --- who may see and press what ---------------------------------------------------------


def test_anonymous_requests_are_sent_to_the_login_page(client):
    run = parked_run()
    for url in [
        "/runs/",
        run_url(run),
        run_url(run, "run-live"),
        task_url(run, "a"),
        task_url(run, "a", "task-tail"),
    ]:
        response = client.get(url)
        assert (response.status_code, response["Location"]) == (302, f"/login/?next={url}")
    assert client.post(run_url(run, "run-cancel"))["Location"].startswith("/login/")
    assert DagRun.objects.get(pk=run.pk).state == run.state


def test_a_viewer_sees_no_buttons_and_is_refused_every_post(viewer):
    run = parked_run()
    before = states(run)
    page = html(viewer.get(run_url(run)))
    assert "Cancel run" not in page and "Clear" not in page and "Mark success" not in page
    assert "Mark failed" not in html(viewer.get(task_url(run, "a")))
    seen = {"seen_state": "queued", "seen_try": 0}
    posts = [
        (run_url(run, "run-cancel"), {}),
        (run_url(run, "run-rerun"), {}),
        (task_url(run, "a", "task-clear"), {**seen, "downstream": "on"}),
        (task_url(run, "a", "task-mark"), {**seen, "state": "success"}),
    ]
    assert [viewer.post(url, body).status_code for url, body in posts] == [403] * 4
    assert states(run) == before and not Repair.objects.exists()
    assert viewer.get(run_url(run, "run-cancel")).status_code == 403  # no permission first


def test_an_operator_sees_the_buttons_that_fit_the_run(operator):
    run = parked_run()
    page = html(operator.get(run_url(run)))
    assert "Cancel run" in page and "Rerun failed tasks" not in page
    assert page.count('name="downstream"') == 3 and "checked" in page
    assert 'name="seen_state" value="queued"' in page and 'name="seen_try" value="0"' in page
    services.cancel_run(run)
    page = html(operator.get(run_url(run)))
    assert "Cancel run" not in page and "Rerun failed tasks" in page


def test_unknown_runs_and_tasks_are_404(viewer):
    run = parked_run()
    assert viewer.get("/runs/00000000-0000-0000-0000-000000000000/").status_code == 404
    assert viewer.get(task_url(run, "nope")).status_code == 404
    assert viewer.get(task_url(run, "nope", "task-tail")).status_code == 404


# --- the run list -----------------------------------------------------------------------


def test_the_run_list_filters_by_dag_and_state(viewer):
    other = submit("id: other\ntasks:\n  - {id: x, command: 'true', queue: nobody-listens}\n")
    parked = submit(PARKED)
    insert_runs(parked, 3, state="success")
    insert_runs(other, 2, state="failed")
    page = html(viewer.get("/runs/"))
    assert len(listed(page)) == 5
    assert '<span class="badge state-failed">failed</span>' in page
    assert reverse("dashboard:dag", args=["other"]) in page
    assert len(listed(html(viewer.get("/runs/?dag_id=parked")))) == 3
    assert len(listed(html(viewer.get("/runs/?state=failed")))) == 2
    assert listed(html(viewer.get("/runs/?dag_id=parked&state=failed"))) == []
    odd = html(viewer.get("/runs/?state=done"))
    assert "unknown state &#x27;done&#x27;" in odd and len(listed(odd)) == 5


def test_the_run_list_pages_newest_first_by_keyset(viewer):
    insert_runs(submit(PARKED), 120)
    newest = list(DagRun.objects.order_by("-created_at").values_list("id", flat=True))
    newest = [str(run_id) for run_id in newest]
    first = html(viewer.get("/runs/?state=success"))
    assert listed(first) == newest[:50] and 'rel="prev"' not in first
    second = follow(viewer, first, "next")
    assert listed(second) == newest[50:100]
    third = follow(viewer, second, "next")
    assert listed(third) == newest[100:] and 'rel="next"' not in third
    assert listed(follow(viewer, third, "prev")) == newest[50:100]
    assert listed(follow(viewer, second, "prev")) == newest[:50]
    assert listed(html(viewer.get("/runs/?before=garbage"))) == newest[:50]


@pytest.mark.slow
def test_the_run_list_renders_fast_with_100000_runs(viewer):
    dag = submit(PARKED)
    insert_runs(dag, 100_000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE runs_dagrun")
    viewer.get("/runs/")  # the session and permissions, once
    for query in ["", "?state=success", "?dag_id=parked", "?state=success&dag_id=parked"]:
        started = time.monotonic()
        page = html(viewer.get("/runs/" + query))
        assert time.monotonic() - started < 0.5, query
        assert len(listed(page)) == 50
    deep = DagRun.objects.order_by("created_at")[10]
    started = time.monotonic()
    last = html(viewer.get("/runs/?" + urlencode({"before": run_pages.Cursor.of(deep).token()})))
    assert time.monotonic() - started < 0.5 and len(listed(last)) == 10


# --- a run's page -----------------------------------------------------------------------


def give_attempts(run: DagRun, task_id: str, outcomes: list[str], state: str) -> None:
    """Attempts of `task_id` ending as `outcomes` (one a minute), the instance now `state`."""
    instance = run.task_instances.get(task_id=task_id)
    start = timezone.now() - timedelta(minutes=len(outcomes) + 1)
    for n, outcome in enumerate(outcomes, 1):
        began = start + timedelta(minutes=n)
        TaskAttempt.objects.create(
            task_instance=instance,
            try_number=n,
            state=outcome,
            started_at=began,
            finished_at=began + timedelta(seconds=20),
            stdout=f"out of try {n}",
            stderr=f"err of try {n}",
            worker="w1@host",
            host="host",
            exit_code=0 if outcome == "success" else 3,
        )
    TaskInstance.objects.filter(pk=instance.pk).update(
        state=state,
        try_number=len(outcomes),
        queued_at=began - timedelta(seconds=5),
        started_at=began,
        finished_at=began + timedelta(seconds=20) if state in TaskState.FINAL else None,
    )


def test_the_run_page_shows_graph_gantt_tasks_and_audit_trail(viewer):
    run = parked_run()
    give_attempts(run, "a", ["failed", "success"], "success")
    TaskInstance.objects.filter(run=run, task_id="b").update(
        state="running", try_number=1, started_at=timezone.now(), worker="w1@host"
    )
    repair.mark_task(run.id, "c", "failed", by="alice")
    page = html(viewer.get(run_url(run)))
    assert node_states(page) == {"a": "success", "b": "running", "c": "failed"}
    bars = re.findall(r'class="bar (wait|run) state-(\w+)" data-try="(\d+)"', page)
    # a: two ended attempts, a queue wait before the latest; b: a running bar, no row yet
    assert bars == [
        ("run", "failed", "1"),
        ("wait", "queued", "2"),
        ("run", "success", "2"),
        ("run", "running", "1"),
    ]
    assert ">2/1</td>" in page and ">w1@host</td>" in page  # tries try/max, worker
    assert task_url(run, "a") in page
    trail = re.findall(r'<tr class="repair">(.*?)</tr>', page, re.S)
    assert len(trail) == 1 and "alice" in trail[0] and "mark" in trail[0]
    assert "state=failed" in trail[0] and "was=pending" in trail[0]


def test_the_live_partial_polls_while_the_run_is_unfinished_and_stops_when_final(viewer):
    run = parked_run()
    live = html(viewer.get(run_url(run, "run-live")))
    assert live.lstrip().startswith("<div") and "<html" not in live
    assert 'hx-trigger="every 2s"' in live and 'hx-swap="outerHTML"' in live
    assert f'hx-get="{run_url(run, "run-live")}"' in live
    assert node_states(live) == {"a": "queued", "b": "pending", "c": "pending"}
    assert 'hx-trigger="every 2s"' in html(viewer.get(run_url(run)))
    services.cancel_run(run)
    final = html(viewer.get(run_url(run, "run-live")))
    assert "hx-trigger" not in final and 'data-run-state="cancelled"' in final
    assert set(node_states(final).values()) == {"cancelled"}
    assert "hx-trigger" not in html(viewer.get(run_url(run)))


# --- the buttons ------------------------------------------------------------------------


def test_mark_and_clear_change_the_run_as_the_api_does(operator):
    run = parked_run()
    seen = {"seen_state": "queued", "seen_try": 0}
    marked = operator.post(task_url(run, "a", "task-mark"), {**seen, "state": "success"})
    assert (marked.status_code, marked["Location"]) == (302, run_url(run))
    assert message(marked) == "success: task 'a' marked success"
    assert states(run) == {"a": ("success", 0), "b": ("queued", 0), "c": ("queued", 0)}
    entry = Repair.objects.get()
    assert (entry.action, entry.task_id, entry.by) == ("mark", "a", "operator-user")
    assert entry.details == {"state": "success", "was": "queued"}

    seen = {"seen_state": "success", "seen_try": 0, "downstream": "on"}
    cleared = operator.post(task_url(run, "a", "task-clear"), seen)
    assert cleared.status_code == 302, message(cleared)
    assert states(run) == {"a": ("queued", 0), "b": ("pending", 0), "c": ("pending", 0)}
    assert Repair.objects.latest("id").details == {"downstream": True}


def test_clear_without_downstream_clears_the_task_alone(operator):
    run = parked_run()
    repair.mark_task(run.id, "a", "success")
    repair.mark_task(run.id, "b", "failed")
    body = {"seen_state": "failed", "seen_try": 0, "back": "task"}  # the box unticked
    cleared = operator.post(task_url(run, "b", "task-clear"), body)
    assert cleared["Location"] == task_url(run, "b")
    assert states(run)["b"] == ("queued", 0) and states(run)["c"][0] == "queued"
    assert Repair.objects.latest("id").details == {"downstream": False}


def test_a_stale_page_gets_a_warning_and_changes_nothing(operator):
    run = parked_run()
    give_attempts(run, "a", ["failed"], "up_for_retry")
    before = (states(run), Repair.objects.count())
    stale = {"seen_state": "up_for_retry", "seen_try": 0}
    for url, body in [
        (task_url(run, "a", "task-clear"), {**stale, "downstream": "on"}),
        (task_url(run, "a", "task-mark"), {**stale, "state": "failed"}),
    ]:
        response = operator.post(url, body)
        assert response.status_code == 302
        said = message(response)
        assert said.startswith("warning: task 'a' is now up_for_retry (try 1)")
        assert "nothing was changed" in said
    assert (states(run), Repair.objects.count()) == before
    body = {**stale, "state": "success"}
    followed = html(operator.post(task_url(run, "a", "task-mark"), body, follow=True))
    assert '<li class="warning">task &#x27;a&#x27; is now up_for_retry (try 1)' in followed


def test_cancel_then_rerun(operator):
    run = parked_run()
    refused = operator.post(run_url(run, "run-rerun"))
    assert message(refused).startswith("warning: run ") and "still" in message(refused)
    cancelled = operator.post(run_url(run, "run-cancel"))
    assert message(cancelled) == f"success: run {run.id} cancelled"
    run.refresh_from_db()
    assert run.state == RunState.CANCELLED
    assert {state for state, _ in states(run).values()} == {"cancelled"}
    again = operator.post(run_url(run, "run-cancel"))
    assert message(again).startswith("warning: ") and "nothing to cancel" in message(again)
    rerun = operator.post(run_url(run, "run-rerun"))
    assert message(rerun).startswith("success: ")
    run.refresh_from_db()
    assert run.state == RunState.RUNNING
    assert states(run) == {"a": ("queued", 0), "b": ("pending", 0), "c": ("pending", 0)}
    assert Repair.objects.get().action == "rerun"


def test_a_bad_form_is_refused_with_a_message(operator):
    run = parked_run()
    response = operator.post(task_url(run, "a", "task-mark"), {"state": "skipped"})
    assert message(response).startswith("error: nothing marked: state:")
    assert not Repair.objects.exists()


# --- a task's page ----------------------------------------------------------------------


def test_the_task_page_and_its_live_tail(viewer):
    run = parked_run()
    give_attempts(run, "a", ["failed"], "running")
    TaskInstance.objects.filter(run=run, task_id="a").update(
        try_number=2, live_output="line 1\nline <2>\n", worker="w2@host"
    )
    page = html(viewer.get(task_url(run, "a")))
    assert '<pre id="live-tail">line 1\nline &lt;2&gt;\n</pre>' in page
    assert f'hx-get="{task_url(run, "a", "task-tail")}" hx-trigger="every 2s"' in page
    assert '<pre class="stdout">out of try 1</pre>' in page
    assert '<pre class="stderr">err of try 1</pre>' in page
    tail = html(viewer.get(task_url(run, "a", "task-tail")))
    assert "<html" not in tail and 'hx-trigger="every 2s"' in tail and "line &lt;2&gt;" in tail

    TaskInstance.objects.filter(run=run, task_id="a").update(state="success")
    tail = html(viewer.get(task_url(run, "a", "task-tail")))
    assert "hx-trigger" not in tail and "the task is success" in tail
    assert '<pre id="live-tail">' not in html(viewer.get(task_url(run, "a")))


def test_the_task_page_pages_its_attempts_newest_first(viewer):
    run = parked_run()
    count = run_pages.ATTEMPTS_PER_PAGE + 2
    give_attempts(run, "a", ["failed"] * (count - 1) + ["success"], "success")
    page = html(viewer.get(task_url(run, "a")))
    shown = [int(n) for n in re.findall(r'id="attempt-(\d+)"', page)]
    assert shown == list(range(count, 2, -1))
    (older,) = re.findall(r'rel="next" href="\?([^"]+)"', page)
    rest = html(viewer.get(task_url(run, "a") + "?" + older))
    assert [int(n) for n in re.findall(r'id="attempt-(\d+)"', rest)] == [2, 1]
    assert 'rel="next"' not in rest and 'rel="prev"' in rest


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker")
def test_a_finished_run_with_a_retried_task_on_a_real_worker(tmp_path):
    operator = login("operator")
    marker = tmp_path / "failed-once"
    run, instances = run_dag(
        f"""
id: flaky
tasks:
  - id: flaky
    command: "echo to-stdout; echo to-stderr >&2; test -f {marker} || (touch {marker}; exit 3)"
    retries: 1
    retry_delay_secs: 0
  - {{id: after, command: "echo after", depends_on: [flaky]}}
"""
    )
    assert run.state == RunState.SUCCESS and instances["flaky"].try_number == 2
    page = html(operator.get(run_url(run)))
    assert node_states(page) == {"flaky": "success", "after": "success"}
    run_bars = re.findall(r'class="bar run state-(\w+)" data-try="(\d+)"', page)
    assert run_bars == [("up_for_retry", "1"), ("success", "2"), ("success", "1")]
    assert "hx-trigger" not in page and "Rerun failed tasks" not in page
    task = html(operator.get(task_url(run, "flaky")))
    assert re.findall(r'id="attempt-(\d+)"', task) == ["2", "1"]
    assert task.count('<pre class="stdout">to-stdout') == 2
    assert task.count('<pre class="stderr">to-stderr') == 2
    assert '<pre id="live-tail">' not in task

    seen = {"seen_state": "success", "seen_try": 1, "state": "failed"}
    marked = operator.post(task_url(run, "after", "task-mark"), seen)
    assert message(marked) == "success: task 'after' marked failed"
    assert DagRun.objects.get(pk=run.pk).state == RunState.FAILED
    assert "Rerun failed tasks" in html(operator.get(run_url(run)))


# --- cost -------------------------------------------------------------------------------


def wide_dag(width: int) -> str:
    tasks = "\n".join(
        f"  - {{id: t{n}, command: 'true', queue: nobody-listens, depends_on: [root]}}"
        for n in range(width)
    )
    return (
        f"id: wide{width}\ntasks:\n  - {{id: root, command: 'true', queue: nobody-listens}}\n"
        + tasks
        + "\n"
    )


def queries(client: Client, url: str) -> int:
    client.get(url)  # the compiled spec and layout, cached per version
    with CaptureQueriesContext(connection) as captured:
        html(client.get(url))
    return len(captured.captured_queries)


def test_query_counts_stay_fixed_as_tasks_attempts_and_runs_grow(operator):
    small, big = parked_run(wide_dag(2)), parked_run(wide_dag(40))
    for run in (small, big):
        for instance in run.task_instances.all()[: 3 if run is small else 30]:
            give_attempts(run, instance.task_id, ["failed", "failed", "success"], "success")
        repair.mark_task(run.id, "t1", "failed", by="alice")
    for name in ("run", "run-live"):
        assert queries(operator, run_url(small, name)) == queries(operator, run_url(big, name))
    counts = {name: queries(operator, run_url(big, name)) for name in ("run", "run-live")}
    for name in ("task", "task-tail"):
        assert queries(operator, task_url(small, "root", name)) == queries(
            operator, task_url(big, "root", name)
        )
    few = queries(operator, "/runs/")
    insert_runs(small.dag, 200)
    assert queries(operator, "/runs/") == few
    print(f"queries: {counts}, run list {few}")


# --- the pure parts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, ""), (0.04, "0.0 s"), (4.25, "4.2 s"), (185, "3 m 05 s"), (7380, "2 h 03 m")],
)
def test_durations_read_as_people_say_them(seconds, shown):
    assert gantt.format_duration(seconds) == shown


def test_gantt_places_spans_on_one_axis_and_a_running_one_ends_now():
    t0 = timezone.now()
    at = [t0 + timedelta(seconds=s) for s in range(0, 101)]
    spans = [
        gantt.Span("wait", "queued", 1, at[0], at[10]),
        gantt.Span("run", "failed", 1, at[10], at[30]),
        gantt.Span("run", "running", 2, at[50], None),
    ]
    chart = gantt.gantt([("a", "/a", spans), ("b", "/b", [])], now=at[100])
    assert chart.start == t0 and chart.seconds == 100
    assert [(bar.kind, bar.left, bar.width) for bar in chart.rows[0].bars] == [
        ("wait", 0, 10),
        ("run", 10, 20),
        ("run", 50, 50),
    ]
    assert chart.rows[1].bars == [] and chart.ticks[-1] == (100, "+1 m 40 s")
    blip = gantt.Span("run", "success", 1, at[100], at[100])
    (bar,) = gantt.gantt([("a", "/a", spans), ("c", "/c", [blip])], at[100]).rows[1].bars
    assert (bar.left, bar.width) == (100 - gantt.MIN_BAR_PERCENT, gantt.MIN_BAR_PERCENT)
    assert gantt.gantt([("a", "/a", [])], at[0]).start is None


def test_a_mangled_page_cursor_reads_as_the_first_page():
    assert run_pages.Cursor.parse(None) is None
    assert run_pages.Cursor.parse("garbage") is None
    assert run_pages.Cursor.parse("2024-01-01T00:00:00+00:00~not-a-uuid") is None
    cursor = run_pages.Cursor(timezone.now(), uuid.uuid4())
    assert run_pages.Cursor.parse(cursor.token()) == cursor
