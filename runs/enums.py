"""The states of runs and task instances (CONTRACT section 2): the ground of `runs`, which
the models and the state machine (runs/states/) both build on."""

from __future__ import annotations

from django.db import models


class RunState(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"


RunState.FINAL = frozenset({RunState.SUCCESS, RunState.FAILED, RunState.CANCELLED})


class TaskState(models.TextChoices):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    UP_FOR_RETRY = "up_for_retry"
    FAILED = "failed"
    UPSTREAM_FAILED = "upstream_failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


TaskState.FINAL = frozenset(
    {
        TaskState.SUCCESS,
        TaskState.FAILED,
        TaskState.UPSTREAM_FAILED,
        TaskState.SKIPPED,
        TaskState.CANCELLED,
    }
)
# Final states that make a run `failed`.
TaskState.FAILING = frozenset({TaskState.FAILED, TaskState.UPSTREAM_FAILED})
