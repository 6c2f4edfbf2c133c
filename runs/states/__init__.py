"""The state machine of runs and task instances (CONTRACT section 2).

Every transition is one guarded UPDATE: it names the states it may leave, and a row that
is in any other state is left alone (the caller learns it lost the race). Nothing else in
the project writes `state` columns.
"""

from .dag_runs import CANCELLABLE, cancel_run, count_finished_tasks, reopen_run, start_run
from .instances import (
    Claim,
    Finish,
    Latch,
    claim,
    clear_instance,
    finish_attempt,
    finish_task,
    hand_back,
    leave_pending,
    queue_retry,
    release_downstream,
    worker_host,
)
from .machine import (
    RUN_TRANSITIONS,
    TASK_TRANSITIONS,
    RunState,
    TaskState,
    TransitionRefused,
    check_task_transition,
)
from .repairs import (
    Republish,
    finish_drained_run,
    requeue_overdue_retries,
    requeue_stale_queued,
    take_expired_lease,
)

__all__ = [
    "CANCELLABLE",
    "RUN_TRANSITIONS",
    "TASK_TRANSITIONS",
    "Claim",
    "Finish",
    "Latch",
    "Republish",
    "RunState",
    "TaskState",
    "TransitionRefused",
    "cancel_run",
    "check_task_transition",
    "claim",
    "clear_instance",
    "count_finished_tasks",
    "finish_attempt",
    "finish_drained_run",
    "finish_task",
    "hand_back",
    "leave_pending",
    "queue_retry",
    "release_downstream",
    "reopen_run",
    "requeue_overdue_retries",
    "requeue_stale_queued",
    "start_run",
    "take_expired_lease",
    "worker_host",
]
