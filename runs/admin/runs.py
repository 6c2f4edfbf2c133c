"""Runs in the admin: read-only; cancelled and rerun by actions that call runs.services
and runs.repair, with the run's audit trail of repairs on its page."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from dags.admin import (
    ReadOnlyAdmin,
    ReadOnlyInline,
    dag_filter,
    pretty_json,
    seconds,
    state_badge,
)

from .. import repair, services
from ..models import DagRun, Repair, TaskInstance
from .common import CANCEL, RETRY, TaskInstanceDisplay


class TaskInstanceInline(TaskInstanceDisplay, ReadOnlyInline, admin.TabularInline):
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


class RepairInline(ReadOnlyInline, admin.TabularInline):
    """The run's audit trail of repairs: who did what, and when."""

    model = Repair
    fields = ("at", "by", "action", "task_id", "what", "changed")
    readonly_fields = fields
    verbose_name_plural = "repairs (who repaired this run, and how)"

    @admin.display(description="details")
    def what(self, repair: Repair) -> str:
        details = repair.details or {}
        if "was" in details:
            return f"{details.get('state')} (was {details['was']})"
        if "downstream" in details:
            return "with its downstream" if details["downstream"] else "this task only"
        return "-"

    @admin.display(description="tasks changed")
    def changed(self, repair: Repair) -> str:
        return ", ".join(repair.tasks) or "-"


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
    actions = ["cancel", "rerun"]
    inlines = [TaskInstanceInline, RepairInline]
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

    def has_rerun_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(RETRY)

    @admin.action(description="Rerun failed and cancelled tasks", permissions=["rerun"])
    def rerun(self, request: HttpRequest, queryset: QuerySet[DagRun]) -> None:
        for run in queryset:
            try:
                repair.rerun(run.id, by=request.user.get_username())
            except repair.RepairRefused as exc:
                self.message_user(request, f"{run}: {exc}", messages.WARNING)
            else:
                self.message_user(request, f"Rerunning the failed tasks of {run}.")

    @admin.action(description="Cancel run", permissions=["cancel"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[DagRun]) -> None:
        for run in queryset:
            try:
                services.cancel_run(run)
            except services.RunFinished as exc:
                self.message_user(request, f"{run}: {exc}", messages.WARNING)
            else:
                self.message_user(request, f"Cancelled {run}.")
