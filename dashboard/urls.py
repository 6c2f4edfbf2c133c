"""The dashboard's pages (CONTRACT section 10) and the POSTs of their buttons."""

from django.urls import path

from .views import dags, ops, runs

app_name = "dashboard"

urlpatterns = [
    path("", dags.dag_list, name="dags"),
    path("dags/<str:dag_id>/", dags.dag_detail, name="dag"),
    path("dags/<str:dag_id>/pause", dags.pause, name="dag-pause"),
    path("dags/<str:dag_id>/trigger", dags.trigger, name="dag-trigger"),
    path("dags/<str:dag_id>/backfill", dags.backfill, name="dag-backfill"),
    path("runs/", runs.run_list, name="runs"),
    path("runs/<uuid:run_id>/", runs.run_detail, name="run"),
    path("runs/<uuid:run_id>/live", runs.run_live, name="run-live"),
    path("runs/<uuid:run_id>/cancel", runs.cancel, name="run-cancel"),
    path("runs/<uuid:run_id>/rerun", runs.rerun, name="run-rerun"),
    path("runs/<uuid:run_id>/tasks/<str:task_id>/", runs.task_detail, name="task"),
    path("runs/<uuid:run_id>/tasks/<str:task_id>/tail", runs.task_tail, name="task-tail"),
    path("runs/<uuid:run_id>/tasks/<str:task_id>/clear", runs.clear, name="task-clear"),
    path("runs/<uuid:run_id>/tasks/<str:task_id>/mark", runs.mark, name="task-mark"),
    path("dlq/", ops.dead_letters, name="dlq"),
    path("dlq/<int:pk>/retry", ops.retry_dead_letter, name="dlq-retry"),
    path("workers/", ops.workers, name="workers"),
    path("status/", ops.status, name="status"),
]
