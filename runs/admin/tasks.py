"""Task instances and their attempts in the admin: read-only; repaired (retry, clear,
mark) by actions that call runs.repair."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten
from django.db.models import QuerySet
from django.http import HttpRequest

from dags.admin import (
    ReadOnlyAdmin,
    ReadOnlyInline,
    dag_filter,
    preformatted,
    pretty_json,
    seconds,
    state_badge,
)

from .. import repair
from ..models import TaskAttempt, TaskInstance
from ..states import TaskState
from .common import RETRY, TaskInstanceDisplay, run_link


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
class TaskInstanceAdmin(TaskInstanceDisplay, ReadOnlyAdmin):
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
    actions = ["retry", "clear", "clear_alone", "mark_success", "mark_failed"]
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

    @admin.display(description="error")
    def error_display(self, ti: TaskInstance):
        return preformatted(ti.error)

    @admin.display(description="output")
    def output_display(self, ti: TaskInstance):
        return "-" if ti.output is None else pretty_json(ti.output)

    def _repair(self, request: HttpRequest, queryset, done: str, call) -> None:
        """Repair each selected instance with `call(instance, seen, user)`; each is checked
        against the state and try number the page showed (runs/repair.py)."""
        for ti in queryset:
            try:
                call(ti, repair.Seen.of(ti), request.user.get_username())
            except repair.RepairRefused as exc:
                self.message_user(request, f"{ti}: {exc}", messages.WARNING)
            else:
                self.message_user(request, done.format(ti=ti))

    @admin.action(description="Retry failed task (and its downstream)", permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet[TaskInstance]) -> None:
        self._repair(
            request,
            queryset,
            "Retrying {ti} and its downstream tasks.",
            lambda ti, seen, by: repair.retry_task(ti.run_id, ti.task_id, by=by),
        )

    @admin.action(description="Clear (run again, with its downstream)", permissions=["retry"])
    def clear(self, request: HttpRequest, queryset: QuerySet[TaskInstance]) -> None:
        self._repair(
            request,
            queryset,
            "Cleared {ti} and its downstream tasks.",
            lambda ti, seen, by: repair.clear_task(ti.run_id, ti.task_id, by=by, seen=seen),
        )

    @admin.action(description="Clear this task only", permissions=["retry"])
    def clear_alone(self, request: HttpRequest, queryset: QuerySet[TaskInstance]) -> None:
        self._repair(
            request,
            queryset,
            "Cleared {ti}.",
            lambda ti, seen, by: repair.clear_task(
                ti.run_id, ti.task_id, downstream=False, by=by, seen=seen
            ),
        )

    @admin.action(description="Mark success", permissions=["retry"])
    def mark_success(self, request: HttpRequest, queryset: QuerySet[TaskInstance]) -> None:
        self._repair(
            request,
            queryset,
            "Marked {ti} success.",
            lambda ti, seen, by: repair.mark_task(
                ti.run_id, ti.task_id, TaskState.SUCCESS, by=by, seen=seen
            ),
        )

    @admin.action(description="Mark failed", permissions=["retry"])
    def mark_failed(self, request: HttpRequest, queryset: QuerySet[TaskInstance]) -> None:
        self._repair(
            request,
            queryset,
            "Marked {ti} failed.",
            lambda ti, seen, by: repair.mark_task(
                ti.run_id, ti.task_id, TaskState.FAILED, by=by, seen=seen
            ),
        )


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
