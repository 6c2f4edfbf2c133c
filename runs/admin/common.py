"""What the admin modules of runs share: the permissions their actions need, a run link."""

from __future__ import annotations

import uuid

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from dags.admin import excerpt, seconds, state_badge

from ..models import TaskInstance

CANCEL = "runs.cancel_dagrun"
RETRY = "runs.retry_taskinstance"
TRIGGER = "runs.trigger_dagrun"


def run_link(run_id: uuid.UUID):
    """A link to a run's page, from the id alone (no query for the run)."""
    url = reverse("admin:runs_dagrun_change", args=[run_id])
    return format_html('<a href="{}" title="{}">{}</a>', url, run_id, str(run_id)[:8])


class TaskInstanceDisplay:
    """Columns of a task instance, on its own list and on its run's page."""

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
    def error_excerpt(self, ti: TaskInstance) -> str:
        return excerpt(ti.error)
