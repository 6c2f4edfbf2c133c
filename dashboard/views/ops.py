"""Operations pages: dead letters (with their Retry button), workers, system status.
The queries are in dashboard/ops_pages.py; the retry is runs.repair's, as the API's."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.http import urlencode

from runs import repair
from runs.models import DeadLetter

from .. import ops_pages
from ..access import REPAIR, VIEW_DEAD_LETTERS, VIEW_RUNS, VIEW_WORKERS, action, page


@page(VIEW_DEAD_LETTERS)
def dead_letters(request: HttpRequest) -> HttpResponse:
    """GET /dlq/?shown=open|retried|all&page=N: dead-letter entries, newest first."""
    shown = ops_pages.dead_letter_filter(request.GET.get("shown"))
    entries = ops_pages.dead_letter_page(shown, request.GET.get("page"))
    context = {
        "entries": entries,
        "shown": shown,
        "filters": ops_pages.DEAD_LETTER_FILTERS,
        "back": _dlq_query(request.GET),
    }
    return render(request, "dashboard/dead_letters.html", context)


@action(REPAIR)
def retry_dead_letter(request: HttpRequest, pk: int) -> HttpResponse:
    """POST /dlq/<pk>/retry: run the entry's task again with fresh tries (as
    POST /api/v1/dlq/<pk>/retry); back to the list with a success or warning message."""
    entry = get_object_or_404(DeadLetter, pk=pk)
    try:
        repair.retry_dead_letter(entry, by=request.user.get_username())
    except repair.RepairRefused as exc:
        messages.warning(request, str(exc))
    else:
        messages.success(
            request, f"{entry.dag_id}/{entry.task_id} runs again in run {str(entry.run_id)[:8]}"
        )
    return HttpResponseRedirect(reverse("dashboard:dlq") + _dlq_query(request.GET))


@page(VIEW_WORKERS)
def workers(request: HttpRequest) -> HttpResponse:
    """GET /workers/?page=N: workers seen by heartbeat, alive ones first."""
    heartbeats, rows = ops_pages.workers_page(request.GET.get("page"))
    return render(request, "dashboard/workers.html", {"page": heartbeats, "workers": rows})


@page(VIEW_RUNS)
def status(request: HttpRequest) -> HttpResponse:
    """GET /status/: queue depths, runs and tasks by state, workers, the last hour."""
    return render(request, "dashboard/status.html", {"status": ops_pages.status_page()})


def _dlq_query(params: QueryDict) -> str:
    """'?shown=..&page=..' of the list a retry came from ('' for the default list)."""
    kept = {key: params[key] for key in ("shown", "page") if params.get(key)}
    return f"?{urlencode(kept)}" if kept else ""
