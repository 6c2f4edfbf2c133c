"""Runs, a run's page (with its live partial), a task's page (with its live tail), and
the buttons on them: cancel, rerun, clear, mark. The buttons call runs.services and
runs.repair exactly as the API does, then go back to the page with a message."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone

from runs import repair, services
from runs.enums import TaskState

from .. import run_pages
from ..access import CANCEL, REPAIR, action, page


@page()
def run_list(request: HttpRequest) -> HttpResponse:
    """Runs newest first, filtered by `dag_id` and `state`, 50 a page."""
    listing = run_pages.run_list_page(request.GET, timezone.now())
    return render(request, "dashboard/run_list.html", listing.context())


@page()
def run_detail(request: HttpRequest, run_id: UUID) -> HttpResponse:
    """A run: header, graph, Gantt, tasks (the live partial), and its repairs."""
    run = run_pages.get_run(run_id)
    context = run_pages.run_view(run, timezone.now()).context()
    context.update(repairs=run.repairs.all(), params_json=run_pages.pretty_json(run.params))
    return render(request, "dashboard/run_detail.html", context)


@page()
def run_live(request: HttpRequest, run_id: UUID) -> HttpResponse:
    """The run page's changing part, polled every 2 s while the run is unfinished."""
    run = run_pages.get_run(run_id)
    context = run_pages.run_view(run, timezone.now()).context()
    return render(request, "dashboard/run_live.html", context)


@page()
def task_detail(request: HttpRequest, run_id: UUID, task_id: str) -> HttpResponse:
    """A task instance: its state, its attempts newest first, the live tail while it runs."""
    instance = run_pages.get_instance(run_id, task_id)
    view = run_pages.task_view(instance, request.GET, timezone.now())
    return render(request, "dashboard/task_detail.html", view.context())


@page()
def task_tail(request: HttpRequest, run_id: UUID, task_id: str) -> HttpResponse:
    """The live tail, polled every 2 s while the instance runs."""
    instance = run_pages.get_instance(run_id, task_id, tail_only=True)
    context = {"instance": instance, "running": instance.state == TaskState.RUNNING}
    return render(request, "dashboard/task_tail.html", context)


@action(CANCEL)
def cancel(request: HttpRequest, run_id: UUID) -> HttpResponse:
    run = run_pages.get_run(run_id)
    try:
        services.cancel_run(run)
    except services.RunFinished as exc:
        messages.warning(request, str(exc))
    else:
        messages.success(request, f"run {run.id} cancelled")
    return redirect("dashboard:run", run_id)


@action(REPAIR)
def rerun(request: HttpRequest, run_id: UUID) -> HttpResponse:
    run = run_pages.get_run(run_id)
    done = f"run {run.id}: its failed, upstream_failed and cancelled tasks run again"
    _repair(request, done, repair.rerun, run.id, by=request.user.get_username())
    return redirect("dashboard:run", run_id)


@action(REPAIR)
def clear(request: HttpRequest, run_id: UUID, task_id: str) -> HttpResponse:
    instance = run_pages.get_instance(run_id, task_id, tail_only=True)
    form = run_pages.ClearForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"nothing cleared: {form.problems()}")
        return _back(request, run_id, task_id)
    downstream = form.cleaned_data["downstream"]
    done = f"task '{task_id}'{' and its downstream' if downstream else ''} cleared to run again"
    _repair(
        request,
        done,
        repair.clear_task,
        instance.run_id,
        task_id,
        downstream=downstream,
        by=request.user.get_username(),
        seen=form.seen(),
    )
    return _back(request, run_id, task_id, form.cleaned_data["back"])


@action(REPAIR)
def mark(request: HttpRequest, run_id: UUID, task_id: str) -> HttpResponse:
    instance = run_pages.get_instance(run_id, task_id, tail_only=True)
    form = run_pages.MarkForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"nothing marked: {form.problems()}")
        return _back(request, run_id, task_id)
    state = form.cleaned_data["state"]
    _repair(
        request,
        f"task '{task_id}' marked {state}",
        repair.mark_task,
        instance.run_id,
        task_id,
        state,
        by=request.user.get_username(),
        seen=form.seen(),
    )
    return _back(request, run_id, task_id, form.cleaned_data["back"])


def _repair(request: HttpRequest, done: str, call: Callable[..., object], *args, **kwargs) -> None:
    """Call a repair; its refusal (a conflict: the page was stale) becomes a warning,
    and then nothing changed."""
    try:
        call(*args, **kwargs)
    except repair.RepairRefused as exc:
        messages.warning(request, str(exc))
    else:
        messages.success(request, done)


def _back(request: HttpRequest, run_id: UUID, task_id: str, to: str = "run") -> HttpResponse:
    """Back to the page the button was on: the run's, or the task's."""
    if to == "task":
        return redirect("dashboard:task", run_id, task_id)
    return redirect("dashboard:run", run_id)
