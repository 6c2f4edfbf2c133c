"""The admin of runs and everything else registered: no page answers 500, engine rows are
read-only, cancel and retry go through runs.services, lists cost a fixed number of queries."""

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    SolarSchedule,
)
from rest_framework.authtoken.models import Token

from dags.models import Dag, DagVersion, Pool
from dags.services import submit_dag
from dags.tests.test_admin import role_client, staff_operator, staff_viewer  # noqa: F401
from runs import services
from runs.models import (
    DagRun,
    DeadLetter,
    Job,
    TaskAttempt,
    TaskInstance,
    WorkerHeartbeat,
    Workflow,
)
from runs.states import RunState, TaskState

pytestmark = pytest.mark.django_db

CHAIN = """id: chain
schedule: "@daily"
tasks:
  - {id: extract, command: echo e}
  - {id: load, command: echo l, depends_on: [extract]}
"""
ENGINE_MODELS = [DagRun, TaskInstance, TaskAttempt, DeadLetter, Job, Workflow, WorkerHeartbeat]


def url(model, view: str, *args) -> str:
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


def texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def failed_run(dag_yaml: str = CHAIN) -> tuple[DagRun, TaskInstance]:
    """A run whose first task failed after 1 try (with its attempt and dead letter) and
    whose second task is upstream_failed: rows as the engine leaves them."""
    run = services.trigger_run(submit_dag(dag_yaml).dag)
    now = timezone.now()
    first, *rest = run.task_instances.order_by("id")
    TaskInstance.objects.filter(pk=first.pk).update(
        state=TaskState.FAILED, try_number=1, started_at=now, finished_at=now, error="boom"
    )
    TaskInstance.objects.filter(pk__in=[ti.pk for ti in rest]).update(
        state=TaskState.UPSTREAM_FAILED, finished_at=now, pending_upstream=0, upstream_failed=1
    )
    DagRun.objects.filter(pk=run.pk).update(
        state=RunState.FAILED, finished_at=now, tasks_unfinished=0, tasks_failed=len(rest) + 1
    )
    TaskAttempt.objects.create(
        task_instance=first, try_number=1, state=TaskState.FAILED, error="boom", stdout="out"
    )
    DeadLetter.objects.create(
        run=run, task_instance=first, dag_id="chain", task_id=first.task_id, attempts=1
    )
    run.refresh_from_db()
    first.refresh_from_db()
    return run, first


@pytest.fixture
def every_kind_of_row():
    """At least one row of every model the admin site shows."""
    run, _ = failed_run()
    Job.objects.create(run=services.trigger_run(run.dag), type="shell", input={"command": "x"})
    Workflow.objects.create(run=services.trigger_run(run.dag), name="flow", input={"steps": []})
    WorkerHeartbeat.objects.create(
        hostname="w1@host", queues=["default"], running=[], last_heartbeat=timezone.now()
    )
    IntervalSchedule.objects.create(every=10, period=IntervalSchedule.SECONDS)
    CrontabSchedule.objects.create(minute="0", hour="3")  # DAG schedules no longer make any
    ClockedSchedule.objects.create(clocked_time=timezone.now())
    SolarSchedule.objects.create(event="sunrise", latitude=50, longitude=10)
    Dag.objects.create(dag_id="legacy", name="made by the old Add DAG page")  # no version
    Pool.objects.create(name="db", slots=2, description="the warehouse")
    Group.objects.get_or_create(name="viewer")
    user = User.objects.create_user("someone")
    Token.objects.create(user=user)
    return run


def walk_admin_site(client: Client, user: User) -> list[str]:
    """GET every registered model's list, add page and the pages of (up to 5 of) its rows;
    each answers 200, or 403 where the user lacks the permission. Returns the pages that
    answered 200."""
    request = RequestFactory().get("/admin/")
    request.user = user
    seen = []
    for path in ("/admin/", "/admin/dags/", "/admin/runs/"):
        assert client.get(path).status_code == 200
    for model, model_admin in admin.site._registry.items():
        objects = list(model._default_manager.order_by("pk")[:5])
        assert objects, f"no {model.__name__} row to look at"
        pages = [
            (url(model, "changelist"), model_admin.has_view_or_change_permission(request)),
            (url(model, "add"), model_admin.has_add_permission(request)),
            (url(model, "history", objects[0].pk), model_admin.has_view_permission(request)),
        ] + [
            (url(model, "change", obj.pk), model_admin.has_view_or_change_permission(request, obj))
            for obj in objects
        ]
        for path, allowed in pages:
            response = client.get(path)
            assert response.status_code == (200 if allowed else 403), path
            if allowed:
                seen.append(path)
    return seen


def test_every_admin_page_answers_for_a_superuser(admin_client, admin_user, every_kind_of_row):
    seen = walk_admin_site(admin_client, admin_user)
    for model in ENGINE_MODELS:
        assert url(model, "changelist") in seen
        assert url(model, "add") not in seen
    assert url(DagRun, "change", every_kind_of_row.pk) in seen


def test_every_admin_page_answers_for_a_viewer(staff_viewer, every_kind_of_row):  # noqa: F811
    user = User.objects.get(username="viewer-staff")
    seen = walk_admin_site(staff_viewer, user)
    for model in ENGINE_MODELS:
        assert url(model, "changelist") in seen
    assert reverse("admin:auth_user_changelist") not in seen


@pytest.mark.parametrize(
    "model, query",
    [
        (DagRun, {"q": "chain"}),
        (DagRun, {"q": "3f2a"}),
        (DagRun, {"dag": "chain", "state": "failed"}),
        (DagRun, {"created_at__year": timezone.now().year}),
        (TaskInstance, {"q": "extract", "state": "failed", "dag": "chain"}),
        (TaskAttempt, {"q": "chain", "state": "failed"}),
        (DeadLetter, {"retried": "no", "q": "boom"}),
        (Job, {"type": "shell"}),
        (WorkerHeartbeat, {"q": "w1"}),
    ],
)
def test_searches_and_filters_answer(admin_client, every_kind_of_row, model, query):
    page = admin_client.get(url(model, "changelist") + "?" + urlencode(query))
    assert page.status_code == 200


def test_search_by_run_id_prefix(admin_client, every_kind_of_row):
    run = every_kind_of_row
    page = admin_client.get(url(DagRun, "changelist") + "?q=" + str(run.id)[:8])
    assert [r.pk for r in page.context["cl"].result_list] == [run.pk]


def test_readable_names():
    run, ti = failed_run()
    attempt = TaskAttempt.objects.get()
    short = str(run.id)[:8]
    assert str(run) == f"chain run {short}"
    assert str(ti) == f"chain/extract in run {short}"
    assert str(attempt) == "chain/extract try 1 (failed)"
    assert str(DeadLetter.objects.get()) == "chain/extract after 1 attempts"


# --- engine rows are read-only


@pytest.mark.parametrize("model", ENGINE_MODELS)
def test_engine_rows_cannot_be_added_changed_or_deleted(admin_client, every_kind_of_row, model):
    obj = model._default_manager.first()
    assert admin_client.get(url(model, "add")).status_code == 403
    assert admin_client.post(url(model, "add"), {}).status_code == 403
    assert admin_client.post(url(model, "change", obj.pk), {}).status_code == 403
    assert admin_client.post(url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
    page = admin_client.get(url(model, "change", obj.pk))
    assert b'name="_save"' not in page.content
    form = admin_client.get(url(model, "changelist")).context["action_form"]
    assert form is None or "delete_selected" not in dict(form.fields["action"].choices)
    assert model._default_manager.filter(pk=obj.pk).exists()


def test_engine_counters_are_not_editable(admin_client):
    run, ti = failed_run()
    page = admin_client.get(url(TaskInstance, "change", ti.pk))
    html = page.content.decode()
    assert 'name="pending_upstream"' not in html
    assert 'name="lease_expires_at"' not in html
    page = admin_client.get(url(DagRun, "change", run.pk))
    assert 'name="tasks_unfinished"' not in page.content.decode()


# --- actions


def act(client: Client, model, action: str, objects: list):
    data = {"action": action, "_selected_action": [o.pk for o in objects]}
    return client.post(url(model, "changelist"), data)


def test_cancel_run_and_cancel_of_a_finished_run_warns(admin_client):
    dag = submit_dag(CHAIN).dag
    running = services.trigger_run(dag)
    finished, _ = failed_run(CHAIN.replace("id: chain", "id: other"))
    response = act(admin_client, DagRun, "cancel", [running, finished])
    assert response.status_code == 302
    running.refresh_from_db()
    assert running.state == RunState.CANCELLED
    finished.refresh_from_db()
    assert finished.state == RunState.FAILED
    warnings = [m for m in get_messages(response.wsgi_request) if m.level_tag == "warning"]
    assert [str(finished)] == [str(m).split(":")[0] for m in warnings]


def test_retry_failed_task_clears_it_and_its_downstream(admin_client):
    run, ti = failed_run()
    response = act(admin_client, TaskInstance, "retry", [ti])
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.state == RunState.RUNNING
    states = dict(run.task_instances.values_list("task_id", "state"))
    assert states == {"extract": TaskState.QUEUED, "load": TaskState.PENDING}
    assert DeadLetter.objects.get().retried_at is not None


def test_retry_of_a_task_that_did_not_fail_warns(admin_client):
    run, _ = failed_run()
    downstream = run.task_instances.get(task_id="load")
    response = act(admin_client, TaskInstance, "retry", [downstream])
    assert response.status_code == 302
    assert any("only failed tasks can be retried" in text for text in texts(response))
    downstream.refresh_from_db()
    assert downstream.state == TaskState.UPSTREAM_FAILED


def test_dead_letter_retry_then_again_warns(admin_client):
    run, ti = failed_run()
    entry = DeadLetter.objects.get()
    act(admin_client, DeadLetter, "retry", [entry])
    ti.refresh_from_db()
    assert ti.state == TaskState.QUEUED
    response = act(admin_client, DeadLetter, "retry", [entry])
    assert any("already retried" in text for text in texts(response))


def test_viewer_sees_no_actions_and_cannot_act(staff_viewer):  # noqa: F811
    run, ti = failed_run()
    for model in (DagRun, TaskInstance, DeadLetter):
        page = staff_viewer.get(url(model, "changelist"))
        assert page.status_code == 200
        assert page.context["action_form"] is None
    act(staff_viewer, TaskInstance, "retry", [ti])
    act(staff_viewer, DeadLetter, "retry", [DeadLetter.objects.get()])
    ti.refresh_from_db()
    assert ti.state == TaskState.FAILED


def test_operator_gets_cancel_and_the_repairs(staff_operator):  # noqa: F811
    failed_run()
    for model, actions in (
        (DagRun, {"cancel", "rerun"}),
        (TaskInstance, {"retry", "clear", "clear_alone", "mark_success", "mark_failed"}),
        (DeadLetter, {"retry"}),
    ):
        form = staff_operator.get(url(model, "changelist")).context["action_form"]
        assert set(dict(form.fields["action"].choices)) == {"", *actions}


def test_mark_success_then_rerun_from_the_admin_are_kept_on_the_runs_page(admin_client):
    run, ti = failed_run()
    act(admin_client, TaskInstance, "mark_success", [ti])
    run.refresh_from_db()
    states = dict(run.task_instances.values_list("task_id", "state"))
    assert states == {"extract": TaskState.SUCCESS, "load": TaskState.QUEUED}
    assert run.state == RunState.RUNNING

    response = act(admin_client, DagRun, "rerun", [run])  # still running: refused, said why
    assert any("still running" in text for text in texts(response))

    page = admin_client.get(url(DagRun, "change", run.pk))
    assert page.status_code == 200
    trail = [(r.action, r.task_id, r.by) for r in run.repairs.all()]
    assert trail == [("mark", "extract", "admin")]
    assert "Repairs (who repaired this run, and how)" in page.content.decode()
    assert "success (was failed)" in page.content.decode()


def test_clear_alone_from_the_admin_leaves_the_downstream_as_it_was(admin_client):
    run, ti = failed_run()
    act(admin_client, TaskInstance, "clear_alone", [ti])
    states = dict(run.task_instances.values_list("task_id", "state"))
    assert states == {"extract": TaskState.QUEUED, "load": TaskState.UPSTREAM_FAILED}
    (repair,) = run.repairs.all()
    assert (repair.action, repair.details, repair.tasks) == (
        "clear",
        {"downstream": False},
        ["extract"],
    )


# --- no query per row


def queries(client: Client, path: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(path).status_code == 200
    return len(captured)


def more_rows(dag_id: str) -> DagRun:
    """One more of each: DAG, version, runs, task instances, attempt, dead letter, job,
    workflow."""
    run, _ = failed_run(CHAIN.replace("id: chain", f"id: {dag_id}"))
    Job.objects.create(run=services.trigger_run(run.dag), type="shell")
    Workflow.objects.create(run=services.trigger_run(run.dag), name=dag_id)
    return run


def test_lists_and_inlines_cost_the_same_for_more_rows(admin_client):
    wide = "id: wide\ntasks:\n" + "".join(f"  - {{id: t{i}, command: echo}}\n" for i in range(8))
    small = more_rows("chain")
    big = services.trigger_run(submit_dag(wide).dag)
    assert queries(admin_client, url(DagRun, "change", small.pk)) == queries(
        admin_client, url(DagRun, "change", big.pk)
    )
    lists = (Dag, DagVersion, DagRun, TaskInstance, TaskAttempt, DeadLetter, Job, Workflow)
    paths = [url(model, "changelist") for model in lists]
    before = [queries(admin_client, path) for path in paths]
    more_rows("more")
    more_rows("and-more")
    assert [queries(admin_client, path) for path in paths] == before
    ti = small.task_instances.get(task_id="extract")
    one = queries(admin_client, url(TaskInstance, "change", ti.pk))
    TaskAttempt.objects.create(task_instance=ti, try_number=2, state=TaskState.FAILED)
    TaskAttempt.objects.create(task_instance=ti, try_number=3, state=TaskState.FAILED)
    assert queries(admin_client, url(TaskInstance, "change", ti.pk)) == one
