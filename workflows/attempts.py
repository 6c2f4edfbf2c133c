"""The worker side of one attempt: claim it, run it while its lease is kept (leases.py),
announce the result.

A database outage is waited out (the claim and the completion are retried until it is
back), and a worker that shuts down stops its running attempt cleanly, so that the task's
retry policy, not a lease expiry minutes later, decides what happens next.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from billiard.process import current_process
from django.conf import settings
from django.db import (
    InterfaceError,
    OperationalError,
    close_old_connections,
)

from dags.compiled import CompiledDag, compiled_version
from runs import states
from runs.models import TaskInstance

from .executors import AttemptContext, ExecutionResult, execute
from .leases import Lease
from .signals import attempt_finished

log = logging.getLogger(__name__)
T = TypeVar("T")

# Errors that mean "the database is not reachable right now", as opposed to a bad query.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
SHUTDOWN_ERROR = "worker shut down: the attempt was stopped after the shutdown grace period"

# Set in a pool process when its worker asks running attempts to stop (see below).
_shutdown = threading.Event()
_busy = threading.Event()


def run_attempt(instance_id: int, try_number: int, worker: str) -> ExecutionResult | None:
    """Run the attempt a message asks for, unless another message already did.

    Returns None when the claim is refused (duplicate or stale message). Raises one of
    DATABASE_UNAVAILABLE when the database stayed away before the attempt could start,
    so the caller can send the message again; an attempt claimed by then is left to its
    lease, and so to the reconciler.
    """
    if _in_pool_process():
        _shutdown.clear()  # a pool process runs one attempt at a time: the flag was its own
    _busy.set()
    try:
        claim = wait_for_database(_claim, instance_id, try_number, worker, give_up_on_shutdown=True)
        if claim is None:
            log.info(
                "task instance %s try %s already claimed; dropping message",
                instance_id,
                try_number,
            )
            return None
        compiled = wait_for_database(compiled_version, claim.dag_version_id)
        context = AttemptContext(
            task=compiled.tasks[claim.task_id],
            params=claim.params,
            upstream_outputs=UpstreamOutputs(
                claim.run_id, compiled.tasks[claim.task_id]["depends_on"]
            ),
            run_id=claim.run_id,
            try_number=claim.try_number,
        )
        with Lease(claim.instance_id, claim.try_number, _shutdown.is_set) as lease:
            context.should_cancel = lease.should_stop
            result = execute(context)
        if result.cancelled and lease.reason == Lease.SHUTDOWN:
            result = dataclasses.replace(result, cancelled=False, error=SHUTDOWN_ERROR)
        _announce(claim, result, compiled)
        return result
    finally:
        _busy.clear()


def _claim(instance_id: int, try_number: int, worker: str) -> states.Claim | None:
    lease = settings.FLOWFORGE_LEASE_SECS
    claim = states.claim(instance_id, try_number, worker, lease)
    if claim is None and states.queue_retry(instance_id, try_number):
        # A retry's message: its backoff has passed, so up_for_retry -> queued -> running.
        claim = states.claim(instance_id, try_number, worker, lease)
    return claim


class UpstreamOutputs(Mapping):
    """The outputs of a task's upstream tasks, read from the database on first access.

    Most tasks never look (shell and http tasks, callables that take no upstream
    argument), so they do not pay for the query.
    """

    def __init__(self, run_id: str, upstream_ids: list[str]) -> None:
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
        wait_for_database(
            attempt_finished.send, CompiledDag, claim=claim, result=result, compiled=compiled
        )
    except DATABASE_UNAVAILABLE:
        log.exception(
            "could not record try %s of %s/%s; the reconciler will when its lease expires",
            claim.try_number,
            compiled.dag_id,
            claim.task_id,
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
            if (give_up_on_shutdown and _shutdown.is_set()) or time.monotonic() + delay > deadline:
                raise
            log.warning("database unavailable (%s); retrying in %g s", exc, delay)
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
        close_old_connections()  # drops the broken connection, so the next call reconnects


# --- Worker shutdown ------------------------------------------------------------------
# The worker's main process lets running attempts go on for FLOWFORGE_SHUTDOWN_GRACE_SECS
# after a SIGTERM, then sends SIGTERM to the pool processes still busy (workflows/tasks.py;
# Celery's cold shutdown does the same after its soft-shutdown timeout). A pool process
# that gets it while an attempt runs stops that attempt's process group and records the
# attempt as failed, so that its retry policy sends it elsewhere at once (a python
# callable cannot be interrupted: it runs on, within its timeout). Billiard's own handler
# would end the process instead: the attempt's process group is killed then too, but the
# instance would stay `running` until its lease expired.

_previous_sigterm: Callable | int | None = None


def install_shutdown_handler() -> None:
    """Take over SIGTERM in a prefork pool process; elsewhere (the worker's main process
    with the solo or threads pool, a test) leave it alone. Idempotent, so it can run before
    every task: billiard installs its own handler after the pool process starts."""
    global _previous_sigterm
    if not _in_pool_process():
        return
    current = signal.getsignal(signal.SIGTERM)
    if current is not _on_sigterm:
        _previous_sigterm = current
        signal.signal(signal.SIGTERM, _on_sigterm)


def _in_pool_process() -> bool:
    return current_process()._name != "MainProcess"


def request_stop() -> None:
    """Ask the attempts running in this process to stop (the solo and threads pools)."""
    _shutdown.set()


def _on_sigterm(signum: int, frame) -> None:
    if _busy.is_set() and not _shutdown.is_set():
        _shutdown.set()  # Lease.should_stop reports it to the executor
        return
    # Idle, or told a second time: end the process as billiard would have.
    if callable(_previous_sigterm):
        _previous_sigterm(signum, frame)
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
