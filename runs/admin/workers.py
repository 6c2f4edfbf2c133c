"""Jobs, workflows and worker heartbeats in the admin: read-only."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Exists, OuterRef
from django.http import HttpRequest

from dags.admin import (
    ReadOnlyAdmin,
    pretty_json,
    state_badge,
)

from ..models import Job, WorkerHeartbeat, Workflow
from ..status import alive_workers
from .common import run_link


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
