"""The admin of execution state. Every row here is the engine's: read-only, changed only
by actions that call runs.services, as the API does."""

from __future__ import annotations

import uuid

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from dags.admin import (
    ReadOnlyAdmin,
    ReadOnlyInline,
    dag_filter,
    excerpt,
    preformatted,
    pretty_json,
    seconds,
    state_badge,
)

from . import services
from .models import DagRun, DeadLetter, Job, TaskAttempt, TaskInstance, WorkerHeartbeat, Workflow
from .status import alive_workers

CANCEL = "runs.cancel_dagrun"
RETRY = "runs.retry_taskinstance"


def run_link(run_id: uuid.UUID):
    """A link to a run's page, from the id alone (no query for the run)."""
    url = reverse("admin:runs_dagrun_change", args=[run_id])
    return format_html('<a href="{}" title="{}">{}</a>', url, run_id, str(run_id)[:8])


# --- runs ---------------------------------------------------------------------------------


class TaskInstanceInline(ReadOnlyInline, admin.TabularInline):
    model = TaskInstance
    fields = (
        "task_id",
        "state_display",
        "tries",
        "started_at",
        "finished_at",
        "duration_display",
        "worker",
        "exit_code",
        "error_excerpt",
    )
    readonly_fields = fields
    show_change_link = True

    def get_queryset(self, request: HttpRequest):
        # Each row's title names the run's DAG.
        return super().get_queryset(request).select_related("run__dag")

    @admin.display(description="state")
    def state_display(self, ti: TaskInstance):
        return state_badge(ti.state)

    @admin.display(description="tries")
    def tries(self, ti: TaskInstance) -> str:
        return f"{ti.try_number}/{ti.max_tries}"

    @admin.display(description="duration")
    def duration_display(self, ti: TaskInstance) -> str:
        return seconds(ti.duration)

    @admin.display(description="error")
    def error_excerpt(self, ti: TaskInstance) -> str:
        return excerpt(ti.error)


@admin.register(DagRun)
class DagRunAdmin(ReadOnlyAdmin):
    list_display = (
        "short_id",
        "dag",
        "version",
        "state_display",
        "triggered_by",
        "logical_date",
        "started_at",
        "finished_at",
        "duration",
    )
    list_select_related = ("dag", "dag_version__dag")
    list_filter = ("state", "triggered_by", dag_filter("dag__dag_id"), "dag__kind")
    search_fields = ("id", "dag__dag_id", "idempotency_key")
    date_hierarchy = "created_at"
    actions = ["cancel"]
    inlines = [TaskInstanceInline]
    fieldsets = [
        (
            None,
            {
                "fields": (
                    "id",
                    "dag",
                    "dag_version",
                    "state_display",
                    "triggered_by",
                    "logical_date",
                    "params_display",
                    "idempotency_key",
                )
            },
        ),
        ("Timing", {"fields": ("created_at", "started_at", "finished_at", "duration")}),
        (
            "Engine bookkeeping",
            {
                "classes": ("collapse",),
                "fields": ("tasks_unfinished", "tasks_failed"),
                "description": "Counters the engine keeps to finish the run without "
                "rescanning its tasks.",
            },
        ),
    ]

    def get_queryset(self, request: HttpRequest):
        # A version's spec and source are large and none of these pages show them.
        return super().get_queryset(request).defer("dag_version__spec", "dag_version__source")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(CANCEL)

    @admin.display(description="run", ordering="id")
    def short_id(self, run: DagRun) -> str:
        return str(run.id)[:8]

    @admin.display(description="version", ordering="dag_version__version")
    def version(self, run: DagRun) -> str:
        return f"v{run.dag_version.version}"

    @admin.display(description="state", ordering="state")
    def state_display(self, run: DagRun):
        return state_badge(run.state)

    @admin.display(description="duration")
    def duration(self, run: DagRun) -> str:
        if run.started_at and run.finished_at:
            return seconds((run.finished_at - run.started_at).total_seconds())
        return "-"

    @admin.display(description="params")
    def params_display(self, run: DagRun):
        return pretty_json(run.params)

    @admin.action(description="Cancel run", permissions=["cancel"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[DagRun]) -> None:
        for run in queryset:
            try:
                services.cancel_run(run)
            except services.RunFinished as exc:
                self.message_user(request, f"{run}: {exc}", messages.WARNING)
            else:
                self.message_user(request, f"Cancelled {run}.")


# --- task instances and attempts ----------------------------------------------------------


class AttemptDisplay:
    """Columns of an attempt shared by its inline and its own admin."""

    @admin.display(description="duration")
    def duration_display(self, attempt: TaskAttempt) -> str:
        return seconds(attempt.duration)

    @admin.display(description="error")
    def error_display(self, attempt: TaskAttempt):
        return preformatted(attempt.error)

    @admin.display(description="stdout (tail)")
    def stdout_display(self, attempt: TaskAttempt):
        return preformatted(attempt.stdout)

    @admin.display(description="stderr (tail)")
    def stderr_display(self, attempt: TaskAttempt):
        return preformatted(attempt.stderr)


class TaskAttemptInline(AttemptDisplay, ReadOnlyInline, admin.StackedInline):
    model = TaskAttempt
    fields = (
        ("try_number", "state"),
        ("worker", "exit_code"),
        ("started_at", "finished_at", "duration_display"),
        "error_display",
        "stdout_display",
        "stderr_display",
    )
    readonly_fields = flatten(fields)
    ordering = ("-try_number",)

    def get_queryset(self, request: HttpRequest):
        # Each attempt's title names its task, run and DAG.
        return super().get_queryset(request).select_related("task_instance__run__dag")


@admin.register(TaskInstance)
class TaskInstanceAdmin(ReadOnlyAdmin):
    list_display = (
        "task_id",
        "dag",
        "run_display",
        "state_display",
        "tries",
        "started_at",
        "finished_at",
        "duration_display",
        "worker",
    )
    list_select_related = ("run__dag",)
    list_filter = ("state", dag_filter("run__dag__dag_id"))
    search_fields = ("task_id", "run__dag__dag_id", "worker")
    date_hierarchy = "started_at"
    actions = ["retry"]
    inlines = [TaskAttemptInline]
    fieldsets = [
        (None, {"fields": ("run", "task_id", "state_display", "tries", "worker", "exit_code")}),
        ("Error", {"fields": ("error_display",)}),
        (
            "Timing",
            {
                "fields": (
                    "queued_at",
                    "started_at",
                    "finished_at",
                    "duration_display",
                    "next_retry_at",
                )
            },
        ),
        ("Output", {"fields": ("output_display",)}),
        (
            "Engine bookkeeping",
            {
                "classes": ("collapse",),
                "fields": (
                    "lease_expires_at",
                    "pending_upstream",
                    "upstream_succeeded",
                    "upstream_failed",
                    "upstream_skipped",
                ),
                "description": "The lease of a running attempt and the latch counting "
                "upstream tasks; only the engine moves them.",
            },
        ),
    ]

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(RETRY)

    @admin.display(description="DAG", ordering="run__dag__dag_id")
    def dag(self, ti: TaskInstance) -> str:
        return ti.run.dag.dag_id

    @admin.display(description="run", ordering="run__created_at")
    def run_display(self, ti: TaskInstance):
        return run_link(ti.run_id)

    @admin.display(description="state", ordering="state")
    def state_display(self, ti: TaskInstance):
        return state_badge(ti.state)

    @admin.display(description="tries")
    def tries(self, ti: TaskInstance) -> str:
        return f"{ti.try_number}/{ti.max_tries}"

    @admin.display(description="duration")
    def duration_display(self, ti: TaskInstance) -> str:
        return seconds(ti.duration)

    @admin.display(description="error")
    def error_display(self, ti: TaskInstance):
        return preformatted(ti.error)

    @admin.display(description="output")
    def output_display(self, ti: TaskInstance):
        return "-" if ti.output is None else pretty_json(ti.output)

    @admin.action(description="Retry failed task (and its downstream)", permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet[TaskInstance]) -> None:
        for ti in queryset:
            try:
                services.retry_task(ti.run, ti.task_id)
            except services.RetryRefused as exc:
                self.message_user(request, f"{ti}: {exc}", messages.WARNING)
            else:
                self.message_user(request, f"Retrying {ti} and its downstream tasks.")


@admin.register(TaskAttempt)
class TaskAttemptAdmin(AttemptDisplay, ReadOnlyAdmin):
    list_display = (
        "__str__",
        "run_display",
        "try_number",
        "state_display",
        "worker",
        "started_at",
        "duration_display",
        "exit_code",
    )
    list_select_related = ("task_instance__run__dag",)
    list_filter = ("state", dag_filter("task_instance__run__dag__dag_id"))
    search_fields = ("task_instance__task_id", "task_instance__run__dag__dag_id", "worker")
    date_hierarchy = "started_at"
    fields = (
        "task_instance",
        "try_number",
        "state",
        "worker",
        "exit_code",
        "started_at",
        "finished_at",
        "duration_display",
        "error_display",
        "stdout_display",
        "stderr_display",
    )

    @admin.display(description="run")
    def run_display(self, attempt: TaskAttempt):
        return run_link(attempt.task_instance.run_id)

    @admin.display(description="state", ordering="state")
    def state_display(self, attempt: TaskAttempt):
        return state_badge(attempt.state)


# --- dead letters -------------------------------------------------------------------------


class RetriedFilter(admin.SimpleListFilter):
    title = "retried"
    parameter_name = "retried"

    def lookups(self, request, model_admin):
        return [("no", "not yet"), ("yes", "retried")]

    def queryset(self, request, queryset):
        if self.value() in ("no", "yes"):
            return queryset.filter(retried_at__isnull=self.value() == "no")
        return queryset


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "dag_id",
        "task_id",
        "run_display",
        "attempts",
        "error_excerpt",
        "created_at",
        "retried_at",
    )
    list_display_links = ("id", "dag_id", "task_id")
    list_filter = (RetriedFilter, "dag_id")
    search_fields = ("dag_id", "task_id", "error")
    date_hierarchy = "created_at"
    actions = ["retry"]
    fields = (
        "run",
        "task_instance",
        "dag_id",
        "task_id",
        "attempts",
        "error_display",
        "created_at",
        "retried_at",
    )

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(RETRY)

    @admin.display(description="run")
    def run_display(self, entry: DeadLetter):
        return run_link(entry.run_id)

    @admin.display(description="error")
    def error_excerpt(self, entry: DeadLetter) -> str:
        return excerpt(entry.error)

    @admin.display(description="error")
    def error_display(self, entry: DeadLetter):
        return preformatted(entry.error)

    @admin.action(description="Retry (fresh attempts, resuming the run)", permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        for entry in queryset:
            try:
                services.retry_dead_letter(entry)
            except services.RetryRefused as exc:
                self.message_user(request, f"{entry}: {exc}", messages.WARNING)
            else:
                self.message_user(request, f"Retrying {entry.dag_id}/{entry.task_id}.")


# --- jobs, workflows, workers -------------------------------------------------------------


class RunStatusMixin:
    @admin.display(description="run")
    def run_display(self, obj: Job | Workflow):
        return run_link(obj.run_id)

    @admin.display(description="status", ordering="run__state")
    def status(self, obj: Job | Workflow):
        return state_badge(obj.run.state)

    @admin.display(description="input")
    def input_display(self, obj: Job | Workflow):
        return pretty_json(obj.input)


@admin.register(Job)
class JobAdmin(RunStatusMixin, ReadOnlyAdmin):
    list_display = ("id", "type", "run_display", "status", "max_retries", "created_at")
    list_select_related = ("run",)
    list_filter = ("type", "run__state")
    search_fields = ("idempotency_key",)
    date_hierarchy = "created_at"
    fields = (
        "run",
        "type",
        "status",
        "max_retries",
        "idempotency_key",
        "created_at",
        "input_display",
    )


@admin.register(Workflow)
class WorkflowAdmin(RunStatusMixin, ReadOnlyAdmin):
    list_display = ("id", "name", "run_display", "status", "created_at")
    list_select_related = ("run",)
    list_filter = ("run__state",)
    search_fields = ("name",)
    date_hierarchy = "created_at"
    fields = ("run", "name", "status", "created_at", "input_display")


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReadOnlyAdmin):
    list_display = (
        "hostname",
        "alive",
        "pid",
        "queue_names",
        "running_count",
        "started_at",
        "last_heartbeat",
    )
    search_fields = ("hostname",)
    date_hierarchy = "last_heartbeat"
    fields = ("hostname", "alive", "pid", "queue_names", "running", "started_at", "last_heartbeat")

    def get_queryset(self, request: HttpRequest):
        # Alive as /api/v1/workers counts it.
        alive = alive_workers().filter(pk=OuterRef("pk"))
        return super().get_queryset(request).annotate(is_alive=Exists(alive))

    @admin.display(description="alive", boolean=True, ordering="is_alive")
    def alive(self, worker: WorkerHeartbeat) -> bool:
        return worker.is_alive

    @admin.display(description="queues")
    def queue_names(self, worker: WorkerHeartbeat) -> str:
        return ", ".join(worker.queues or [])

    @admin.display(description="running tasks")
    def running_count(self, worker: WorkerHeartbeat) -> int:
        return len(worker.running or [])
