"""The worker side of one attempt: claim it, run it while its lease is kept (leases.py),
announce the result.

A database outage is waited out (the claim and the completion are retried until it is
back). An attempt that a worker's shutdown stops is handed back to the queue with its try
(workflows/shutdown.py): a shutdown is not the task's failure.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from django.conf import settings
from django.db import (
    InterfaceError,
    OperationalError,
    close_old_connections,
)
from django.utils import timezone

from dags.compiled import CompiledDag, compiled_version
from runs import states
from runs.messages import TaskMessage, publish_now
from runs.models import TaskInstance
from runs.services import republish

from . import shutdown
from .dispatch import complete_attempt
from .executors import AttemptContext, ExecutionResult, execute
from .executors.live import LiveOutput
from .executors.python import stop_running_callable
from .leases import Lease, fence_grace

log = logging.getLogger(__name__)
T = TypeVar("T")

# Errors that mean "the database is not reachable right now", as opposed to a bad query.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
LEASE_LOST = (
    "lease lost: the database could not be reached to renew it, so the attempt was stopped "
    "before a retry could start"
)


def run_attempt(instance_id: int, try_number: int, worker: str) -> ExecutionResult | None:
    """Run the attempt a message asks for, unless another message already did.

    Returns None when the claim is refused (duplicate or stale message). Raises one of
    DATABASE_UNAVAILABLE when the database stayed away before the attempt could start,
    so the caller can send the message again; an attempt claimed by then is left to its
    lease, and so to the reconciler.
    """
    with shutdown.attempt_running():
        claim = wait_for_database(_claim, instance_id, try_number, worker, give_up_on_shutdown=True)
        if claim is None:
            log.info(
                "task instance %s (message for try %s): nothing to claim (claimed already, "
                "or it waits for a slot); dropping the message",
                instance_id,
                try_number,
            )
            return None
        compiled = wait_for_database(compiled_version, claim.dag_version_id)
        task = compiled.tasks[claim.task_id]
        context = AttemptContext(
            task=task,
            params=claim.params,
            upstream_outputs=UpstreamOutputs(claim.run_id, task.depends_on),
            run_id=claim.run_id,
            try_number=claim.try_number,
            dags_folder=str(settings.FLOWFORGE_DAGS_FOLDER),
        )
        live = LiveOutput()
        lease = Lease(
            claim.instance_id,
            claim.try_number,
            shutdown.grace_over,
            stop_running_callable,
            log_fields=claim.log_fields(compiled.dag_id),
            live_output=live,
        )
        with lease:
            context.should_cancel = lease.should_stop
            context.on_process_group = lease.set_process_group
            context.live_output = live
            result = execute(context)
        stopped_by = lease.stop_reason() if result.cancelled else None
        if stopped_by == Lease.SHUTDOWN:
            _hand_back(claim, compiled)
            return result
        if stopped_by == Lease.LOST:
            result = dataclasses.replace(result, cancelled=False, error=LEASE_LOST)
        _announce(claim, result, compiled)
        return result


def _claim(instance_id: int, try_number: int, worker: str) -> states.Claim | None:
    try:
        claim = _claim_once(instance_id, try_number, worker)
    except states.NoSlot:
        claim = _wait_for_slot(instance_id, try_number, worker)
    if claim is None and states.queue_retry(instance_id, try_number):
        # A retry's message: its backoff has passed, so up_for_retry -> queued -> running.
        try:
            claim = _claim_once(instance_id, try_number, worker)
        except states.NoSlot:
            claim = _wait_for_slot(instance_id, try_number, worker)
    if claim is None:
        _resend_after_stop(instance_id, try_number)
    return claim


def _claim_once(instance_id: int, try_number: int, worker: str) -> states.Claim | None:
    return states.claim(
        instance_id,
        try_number,
        worker,
        settings.FLOWFORGE_LEASE_SECS,
        stops_over_before=timezone.now() - fence_grace(),
    )


def _resend_after_stop(instance_id: int, try_number: int) -> None:
    """A claim refused because an attempt that a cancel, timeout or repair stopped may
    still run: the message comes back when that attempt's lease and fence grace are over
    (workflows/leases.py). Its end sends it sooner (dispatch.py, `_hand_back`)."""
    cutoff = timezone.now() - fence_grace()
    stopped = (
        TaskInstance.objects.filter(
            id=instance_id,
            state=states.TaskState.QUEUED,
            try_number=try_number,
            stopped_lease__gte=cutoff,
        )
        .values_list("task_id", "run__dag_version_id", "stopped_lease")
        .first()
    )
    if stopped is None:
        return
    task_id, version_id, lease = stopped
    delay = (lease - cutoff).total_seconds()
    queue = compiled_version(version_id).tasks[task_id].queue
    publish_now([TaskMessage(instance_id, try_number, queue, delay)])
    log.info(
        "task instance %s (try %s) waits up to %.0f s for its stopped attempt to end",
        instance_id,
        try_number,
        delay,
    )


def _wait_for_slot(instance_id: int, try_number: int, worker: str) -> states.Claim | None:
    """No slot of its run or pool is free: the instance waits, queued, for a release to
    wake it (runs/states/slots.py). Marked first, then tried once more, so that a slot
    freed in between is not missed; the message is dropped either way."""
    if not states.wait_for_slot(instance_id, try_number):
        return None  # claimed by another message, or cancelled, meanwhile
    try:
        return _claim_once(instance_id, try_number, worker)
    except states.NoSlot:
        log.info(
            "task instance %s (message for try %s) waits for a slot of its run or pool",
            instance_id,
            try_number,
        )
        return None


class UpstreamOutputs(Mapping):
    """The outputs of a task's upstream tasks, read from the database on first access.

    Most tasks never look (shell and http tasks, callables that take no upstream
    argument), so they do not pay for the query.
    """

    def __init__(self, run_id: str, upstream_ids: Sequence[str]) -> None:
        self.run_id, self.upstream_ids = run_id, upstream_ids
        self._outputs: dict | None = None

    def _load(self) -> dict:
        if self._outputs is None:
            rows = TaskInstance.objects.filter(run_id=self.run_id, task_id__in=self.upstream_ids)
            self._outputs = dict(rows.values_list("task_id", "output"))
        return self._outputs

    def __getitem__(self, task_id: str):
        if task_id not in self.upstream_ids:
            raise KeyError(task_id)
        return wait_for_database(self._load).get(task_id)

    def __iter__(self):
        return iter(self.upstream_ids)

    def __len__(self) -> int:
        return len(self.upstream_ids)


def _announce(claim: states.Claim, result: ExecutionResult, compiled: CompiledDag) -> None:
    """Hand the result to the completion handler, waiting out a database outage.

    Completing twice is harmless (the second finds the attempt finished), so a commit
    whose answer was lost can be retried. If the database stays away past the wait,
    the lease expires and the reconciler ends the attempt as "worker lost".
    """
    try:
        wait_for_database(complete_attempt, claim, result, compiled)
    except DATABASE_UNAVAILABLE:
        log.exception(
            "could not record try %s of %s/%s; the reconciler will when its lease expires",
            claim.try_number,
            compiled.dag_id,
            claim.task_id,
            extra=claim.log_fields(compiled.dag_id),
        )


def _hand_back(claim: states.Claim, compiled: CompiledDag) -> None:
    """The worker is shutting down and stopped this attempt: give the try back and send
    the message again, so the next worker runs the same try (CONTRACT section 5). Should
    that fail, the lease expires and the reconciler records the try as lost."""
    task = compiled.tasks[claim.task_id]
    try:
        handed_back = wait_for_database(states.hand_back, claim)
        if not handed_back:  # moved on meanwhile: cancelled, given up, or repaired
            # Stopped by a cancel, timeout or repair: its task's next attempt may start.
            republish(wait_for_database(states.end_stop, claim.instance_id, claim.try_number))
            return
    except DATABASE_UNAVAILABLE:
        log.exception(
            "could not hand %s/%s back",
            compiled.dag_id,
            claim.task_id,
            extra=claim.log_fields(compiled.dag_id),
        )
        return
    publish_now([TaskMessage(claim.instance_id, claim.try_number - 1, task.queue)])
    log.warning(
        "worker shutting down: %s/%s try %s stopped and handed back; the next worker starts it",
        compiled.dag_id,
        claim.task_id,
        claim.try_number,
        extra=claim.log_fields(compiled.dag_id),
    )


def wait_for_database(
    function: Callable[..., T], *args, give_up_on_shutdown: bool = False, **kwargs
) -> T:
    """Call `function`, retrying with backoff while the database is unreachable.

    Gives up (re-raising) after FLOWFORGE_DB_WAIT_SECS, or, if asked to, as soon as the
    worker is shutting down: a message not yet claimed is better sent again.
    """
    deadline = time.monotonic() + settings.FLOWFORGE_DB_WAIT_SECS
    delay = 0.25
    while True:
        try:
            return function(*args, **kwargs)
        except DATABASE_UNAVAILABLE as exc:
            if (
                give_up_on_shutdown and shutdown.grace_over()
            ) or time.monotonic() + delay > deadline:
                raise
            log.warning("database unavailable (%s); retrying in %g s", exc, delay)
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
        close_old_connections()  # drops the broken connection, so the next call reconnects
