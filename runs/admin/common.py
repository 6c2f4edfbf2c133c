"""What the admin modules of runs share: the permissions their actions need, a run link."""

from __future__ import annotations

import uuid

from django.urls import reverse
from django.utils.html import format_html

CANCEL = "runs.cancel_dagrun"
RETRY = "runs.retry_taskinstance"
TRIGGER = "runs.trigger_dagrun"


def run_link(run_id: uuid.UUID):
    """A link to a run's page, from the id alone (no query for the run)."""
    url = reverse("admin:runs_dagrun_change", args=[run_id])
    return format_html('<a href="{}" title="{}">{}</a>', url, run_id, str(run_id)[:8])
