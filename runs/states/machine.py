"""The states of runs and task instances and the moves between them (CONTRACT section 2)."""

from __future__ import annotations

from ..enums import RunState, TaskState

__all__ = ["RUN_TRANSITIONS", "TASK_TRANSITIONS", "RunState", "TaskState", "TransitionRefused"]


TASK_TRANSITIONS: dict[str, frozenset[str]] = {
    TaskState.PENDING: frozenset(
        {TaskState.QUEUED, TaskState.UPSTREAM_FAILED, TaskState.SKIPPED, TaskState.CANCELLED}
    ),
    TaskState.QUEUED: frozenset({TaskState.RUNNING, TaskState.CANCELLED}),
    # running -> queued: an attempt handed back by FlowForge's own shutdown (CONTRACT
    # section 5), its try number given back with it.
    TaskState.RUNNING: frozenset(
        {
            TaskState.SUCCESS,
            TaskState.UP_FOR_RETRY,
            TaskState.FAILED,
            TaskState.CANCELLED,
            TaskState.QUEUED,
        }
    ),
    TaskState.UP_FOR_RETRY: frozenset({TaskState.QUEUED, TaskState.CANCELLED}),
    # Clearing a finished task (retry from the API or the dead-letter queue) makes it
    # wait on its upstream tasks again.
    TaskState.FAILED: frozenset({TaskState.PENDING}),
    TaskState.UPSTREAM_FAILED: frozenset({TaskState.PENDING}),
    TaskState.SKIPPED: frozenset({TaskState.PENDING}),
    TaskState.CANCELLED: frozenset({TaskState.PENDING}),
}

RUN_TRANSITIONS: dict[str, frozenset[str]] = {
    RunState.QUEUED: frozenset({RunState.RUNNING, RunState.CANCELLED}),
    RunState.RUNNING: frozenset({RunState.SUCCESS, RunState.FAILED, RunState.CANCELLED}),
    RunState.FAILED: frozenset({RunState.RUNNING}),  # a failed task was cleared to retry
    RunState.CANCELLED: frozenset({RunState.RUNNING}),
}


class TransitionRefused(ValueError):
    """A transition the state machine does not allow was asked for."""


def check_task_transition(source: str, target: str) -> None:
    if target not in TASK_TRANSITIONS.get(source, ()):
        raise TransitionRefused(f"task instance cannot go from {source} to {target}")
