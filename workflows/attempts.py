"""The worker side of one attempt: claim it, run it with a heartbeat, announce the result."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from dags.compiled import CompiledDag, compiled_version
from runs import states
from runs.models import TaskInstance
from runs.states import TaskState

from .executors import AttemptContext, ExecutionResult, execute
from .signals import attempt_finished

log = logging.getLogger(__name__)


def run_attempt(instance_id: int, try_number: int, worker: str) -> ExecutionResult | None:
    """Run the attempt a message asks for, unless another message already did.

    Returns None when the claim is refused (duplicate or stale message).
    """
    lease = settings.FLOWFORGE_LEASE_SECS
    claim = states.claim(instance_id, try_number, worker, lease)
    if claim is None and states.queue_retry(instance_id, try_number):
        # A retry's message: its backoff has passed, so up_for_retry -> queued -> running.
        claim = states.claim(instance_id, try_number, worker, lease)
    if claim is None:
        log.info(
            "task instance %s try %s already claimed; dropping message", instance_id, try_number
        )
        return None
    compiled = compiled_version(claim.dag_version_id)
    task = compiled.tasks[claim.task_id]
    context = AttemptContext(
        task=task,
        params=claim.params,
        upstream_outputs=_upstream_outputs(claim, compiled),
        run_id=claim.run_id,
        try_number=claim.try_number,
        should_cancel=Heartbeat(claim.instance_id, claim.try_number),
    )
    result = execute(context)
    attempt_finished.send(sender=CompiledDag, claim=claim, result=result, compiled=compiled)
    return result


def _upstream_outputs(claim: states.Claim, compiled: CompiledDag) -> dict:
    task = compiled.tasks[claim.task_id]
    if task["type"] != "python" or not task["callable"] or not task["depends_on"]:
        return {}
    return dict(
        TaskInstance.objects.filter(
            run_id=claim.run_id, task_id__in=task["depends_on"]
        ).values_list("task_id", "output")
    )


class Heartbeat:
    """Polled by the executor while a process runs: renews the lease every few seconds.

    The renewal is guarded on the attempt still being ours and running, so when it
    matches no row (the run was cancelled, or the reconciler gave the attempt up) the
    executor is told to stop.
    """

    def __init__(self, instance_id: int, try_number: int) -> None:
        self.instance_id = instance_id
        self.try_number = try_number
        self.interval = settings.FLOWFORGE_HEARTBEAT_SECS
        self.next_beat = time.monotonic() + self.interval
        self.stop = False

    def __call__(self) -> bool:
        if self.stop or time.monotonic() < self.next_beat:
            return self.stop
        self.next_beat = time.monotonic() + self.interval
        close_old_connections()  # drops a connection that broke, so this beat reconnects
        lease = timezone.now() + timezone.timedelta(seconds=settings.FLOWFORGE_LEASE_SECS)
        try:
            renewed = TaskInstance.objects.filter(
                id=self.instance_id, try_number=self.try_number, state=TaskState.RUNNING
            ).update(lease_expires_at=lease)
        except DatabaseError:  # the database is away: keep running, try again next beat
            log.warning("could not renew the lease of task instance %s", self.instance_id)
            return False
        self.stop = not renewed
        return self.stop
