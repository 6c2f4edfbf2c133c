"""Top-level URL map. API paths answer with and without a trailing slash, no redirect."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from dags.api import DagDetail, DagList, DagPause
from runs.api.adhoc import JobDetail, JobList, WorkflowCreate, WorkflowDetail
from runs.api.backfill import DagBackfill
from runs.api.pools import PoolDetail, PoolList
from runs.api.repair import DeadLetterRetry, RunRerun, TaskClear, TaskMark, TaskRetry
from runs.api.status import Status, WorkerList
from runs.api.views import (
    DagRuns,
    DeadLetterList,
    RunCancel,
    RunDetail,
    RunList,
    RunTasks,
    TaskLogs,
)

from . import metrics
from .health import health

metrics.register()

ID = r"[^/]+"


def api(pattern: str, view, name: str):
    return re_path(rf"^api/v1/{pattern}/?$", view, name=name)


urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("favicon.ico", RedirectView.as_view(url="/static/flowforge/favicon.svg")),
    path("admin/", admin.site.urls),
    re_path(r"^health/?$", health, name="health"),
    re_path(r"^metrics/?$", metrics.export, name="metrics"),
    api("schema", SpectacularAPIView.as_view(permission_classes=[AllowAny]), "schema"),
    api(
        "docs",
        SpectacularSwaggerView.as_view(url_name="schema", permission_classes=[AllowAny]),
        "docs",
    ),
    api("dags", DagList.as_view(), "dag-list"),
    api(rf"dags/(?P<dag_id>{ID})", DagDetail.as_view(), "dag-detail"),
    api(rf"dags/(?P<dag_id>{ID})/pause", DagPause.as_view(paused=True), "dag-pause"),
    api(rf"dags/(?P<dag_id>{ID})/unpause", DagPause.as_view(paused=False), "dag-unpause"),
    api(rf"dags/(?P<dag_id>{ID})/runs", DagRuns.as_view(), "dag-runs"),
    api(rf"dags/(?P<dag_id>{ID})/backfill", DagBackfill.as_view(), "dag-backfill"),
    api("runs", RunList.as_view(), "run-list"),
    api(rf"runs/(?P<run_id>{ID})", RunDetail.as_view(), "run-detail"),
    api(rf"runs/(?P<run_id>{ID})/tasks", RunTasks.as_view(), "run-tasks"),
    api(rf"runs/(?P<run_id>{ID})/cancel", RunCancel.as_view(), "run-cancel"),
    api(rf"runs/(?P<run_id>{ID})/tasks/(?P<task_id>{ID})/logs", TaskLogs.as_view(), "task-logs"),
    api(rf"runs/(?P<run_id>{ID})/rerun", RunRerun.as_view(), "run-rerun"),
    api(rf"runs/(?P<run_id>{ID})/tasks/(?P<task_id>{ID})/retry", TaskRetry.as_view(), "task-retry"),
    api(rf"runs/(?P<run_id>{ID})/tasks/(?P<task_id>{ID})/clear", TaskClear.as_view(), "task-clear"),
    api(rf"runs/(?P<run_id>{ID})/tasks/(?P<task_id>{ID})/mark", TaskMark.as_view(), "task-mark"),
    api("dlq", DeadLetterList.as_view(), "dlq-list"),
    api(rf"dlq/(?P<pk>{ID})/retry", DeadLetterRetry.as_view(), "dlq-retry"),
    api("pools", PoolList.as_view(), "pool-list"),
    api(rf"pools/(?P<name>{ID})", PoolDetail.as_view(), "pool-detail"),
    api("status", Status.as_view(), "status"),
    api("workers", WorkerList.as_view(), "worker-list"),
    api("jobs", JobList.as_view(), "job-list"),
    api(rf"jobs/(?P<pk>{ID})", JobDetail.as_view(), "job-detail"),
    api("workflows", WorkflowCreate.as_view(), "workflow-create"),
    api(rf"workflows/(?P<pk>{ID})", WorkflowDetail.as_view(), "workflow-detail"),
    # The dashboard (CONTRACT section 10) last: `/` is its DAG list.
    path("", include("dashboard.urls")),
]

handler404 = "flowforge.errors.not_found"
handler500 = "flowforge.errors.server_error"
