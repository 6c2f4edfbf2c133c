"""Dead letters in the admin: read-only, retried by an action that calls runs.repair."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from dags.admin import (
    ReadOnlyAdmin,
    excerpt,
    preformatted,
)

from .. import repair
from ..models import DeadLetter
from .common import RETRY, run_link


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
        "retried_by",
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
        "retried_by",
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
                repair.retry_dead_letter(entry, by=request.user.get_username())
            except repair.RepairRefused as exc:
                self.message_user(request, f"{entry}: {exc}", messages.WARNING)
            else:
                self.message_user(request, f"Retrying {entry.dag_id}/{entry.task_id}.")
