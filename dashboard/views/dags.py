"""The DAG list (`/`), the DAG page (`/dags/{dag_id}/`) and their buttons: pause, trigger,
backfill. Thin: dashboard/dag_pages.py queries, runs/ and dags/ services act."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from dags import boundary
from dags.models import Dag
from dags.services import set_paused
from runs import scheduler
from runs.services import TriggerError, trigger_run

from .. import dag_pages, params_form
from ..access import PAUSE, TRIGGER, action, page


@page()
def dag_list(request: HttpRequest) -> HttpResponse:
    """Every DAG (filtered by `q`, `status`, `deactivated`), PAGE_SIZE a page."""
    list_filter = dag_pages.DagListFilter.from_query(request.GET)
    page_of_dags, rows = dag_pages.dag_list_page(list_filter, request.GET.get("page"))
    context = {"filter": list_filter, "page": page_of_dags, "rows": rows}
    return render(request, "dashboard/dag_list.html", context)


@page()
def dag_detail(request: HttpRequest, dag_id: str) -> HttpResponse:
    """One DAG: graph, grid, versions (`?from=&to=` diffs two), source, trigger form."""
    context = dag_pages.dag_page(dag_pages.get_dag(dag_id), request.GET)
    return render(request, "dashboard/dag_detail.html", context)


@action(PAUSE)
def pause(request: HttpRequest, dag_id: str) -> HttpResponse:
    """Pause or unpause (the form's `paused`, else the opposite of now); back to `next`."""
    dag = dag_pages.get_dag(dag_id)
    dag = set_paused(dag, dag_pages.wanted_pause(request.POST, dag))
    messages.success(request, f"DAG {dag.dag_id} {'paused' if dag.is_paused else 'unpaused'}.")
    return _back(request, dag)


@action(TRIGGER)
def trigger(request: HttpRequest, dag_id: str) -> HttpResponse:
    """A run with the form's params; to its page, or back with the reason it failed."""
    dag = dag_pages.get_dag(dag_id)
    try:
        params = params_form.params_from_form(dag_pages.compiled(dag).spec, request.POST)
        run = trigger_run(dag, params=params, triggered_by="dashboard")
    except (boundary.LimitExceeded, TriggerError) as exc:
        messages.error(request, f"DAG {dag.dag_id}: no run triggered: {exc}")
        return redirect("dashboard:dag", dag_id=dag.dag_id)
    messages.success(request, f"Run {run.id} of {dag.dag_id} triggered.")
    return redirect("dashboard:run", run_id=run.id)


@action(TRIGGER)
def backfill(request: HttpRequest, dag_id: str) -> HttpResponse:
    """Runs for the ticks in [start, end]; back to the DAG page saying how many."""
    dag = dag_pages.get_dag(dag_id)
    try:
        summary = dag_pages.backfill(
            dag, request.POST.get("start", ""), request.POST.get("end", "")
        )
    except (scheduler.BackfillError, TriggerError) as exc:
        messages.error(request, f"DAG {dag.dag_id}: nothing backfilled: {exc}")
    else:
        messages.success(request, summary)
    return redirect("dashboard:dag", dag_id=dag.dag_id)


def _back(request: HttpRequest, dag: Dag) -> HttpResponseRedirect:
    """To the page the form names in `next` (this site only), else to the DAG's page."""
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return HttpResponseRedirect(target)
    return HttpResponseRedirect(reverse("dashboard:dag", kwargs={"dag_id": dag.dag_id}))
