"""The single home of every write to runs, task instances, attempts, dead letters and
leases (CONTRACT section 2).

Every transition is one named, guarded statement declared in machine.py: it names the
states it may leave, and a row in any other state is left alone (the caller learns it
lost the race). rules.py holds the readiness rule and the run countdown the statements
compute in the database. Nothing else in the project writes these tables.
"""

from .dag_runs import (
    cancel_run,
    count_finished_tasks,
    create_run,
    finish_drained_run,
    reopen_run,
    start_run,
)
from .instances import (
    CANCELLABLE,
    Cancelled,
    Claim,
    Finish,
    Latch,
    cancel_instances,
    claim,
    finish_task,
    hand_back,
    leave_pending,
    queue_retry,
    release_downstream,
    worker_host,
)
from .leases import renew_lease, take_expired_lease
from .machine import (
    RUN_TRANSITIONS,
    TASK_TRANSITIONS,
    TRANSITIONS,
    RunState,
    TaskState,
    Transition,
    TransitionRefused,
)
from .records import (
    mark_dead_letters_retried,
    record_dead_letter,
    record_late_attempt,
    record_repair,
    record_worker_heartbeat,
)
from .repairs import (
    Found,
    LatchCounts,
    clear_instance,
    lock_run_instances,
    mark_instance,
    set_latches,
    stop_attempt,
)
from .requeues import (
    Republish,
    end_stop,
    requeue_overdue_retries,
    requeue_stale_queued,
)
from .rules import all_success_ready
from .slots import NoSlot, wait_for_slot, wake_waiting
from .timeouts import RUN_TIMED_OUT, time_out_run, time_out_running, time_out_waiting

__all__ = [
    "CANCELLABLE",
    "Cancelled",
    "RUN_TIMED_OUT",
    "RUN_TRANSITIONS",
    "TASK_TRANSITIONS",
    "TRANSITIONS",
    "Claim",
    "Finish",
    "Found",
    "LatchCounts",
    "Latch",
    "NoSlot",
    "Republish",
    "RunState",
    "TaskState",
    "Transition",
    "TransitionRefused",
    "all_success_ready",
    "cancel_instances",
    "cancel_run",
    "claim",
    "clear_instance",
    "count_finished_tasks",
    "end_stop",
    "create_run",
    "finish_drained_run",
    "finish_task",
    "hand_back",
    "leave_pending",
    "lock_run_instances",
    "mark_instance",
    "mark_dead_letters_retried",
    "queue_retry",
    "record_dead_letter",
    "record_late_attempt",
    "record_repair",
    "record_worker_heartbeat",
    "release_downstream",
    "renew_lease",
    "reopen_run",
    "requeue_overdue_retries",
    "requeue_stale_queued",
    "set_latches",
    "start_run",
    "stop_attempt",
    "take_expired_lease",
    "time_out_run",
    "time_out_running",
    "time_out_waiting",
    "wait_for_slot",
    "wake_waiting",
    "worker_host",
]
