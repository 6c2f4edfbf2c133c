"""Finding the object a URL names, or a 404 that says which one is missing."""

from __future__ import annotations

import re
import uuid

from rest_framework.exceptions import NotFound

from ..models import DagRun, TaskInstance


def int_id(text: str) -> int | None:
    """A numeric id from a URL, or None (which matches nothing) for anything else."""
    text = str(text)
    return int(text) if re.fullmatch(r"[0-9]{1,17}", text) else None  # not isdigit(): '²' is one


def get_run(run_id: str) -> DagRun:
    try:
        return DagRun.objects.select_related("dag", "dag_version").get(id=uuid.UUID(str(run_id)))
    except (ValueError, DagRun.DoesNotExist):
        raise NotFound(f"no run with id '{run_id}'") from None


def get_instance(run_id: str, task_id: str) -> TaskInstance:
    run = get_run(run_id)
    try:
        return TaskInstance.objects.get(run=run, task_id=task_id)
    except TaskInstance.DoesNotExist:
        raise NotFound(f"run {run.id} has no task '{task_id}'") from None
