"""The worker side of one attempt: claim it, run it while a heartbeat keeps its lease,
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
    DatabaseError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
)
from django.utils import timezone

from dags.compiled import CompiledDag, compiled_version
from runs import states
from runs.models import TaskInstance
from runs.states import TaskState

from .executors import AttemptContext, ExecutionResult, execute
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
        with Heartbeat(claim.instance_id, claim.try_number) as heartbeat:
            context.should_cancel = heartbeat.should_stop
            result = execute(context)
        if result.cancelled and heartbeat.reason == Heartbeat.SHUTDOWN:
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


class Heartbeat:
    """Renews the attempt's lease from a background thread while the attempt runs.

    Every executor, in-process python callables and HTTP requests included, keeps its
    lease this way. The renewal is guarded on the attempt still being ours and running;
    when it matches no row (the run was cancelled, or the reconciler gave the attempt up)
    `should_stop` turns true and executors that poll it stop their process group. It also
    turns true when the worker shuts down.
    """

    MOVED_ON = "moved on"
    SHUTDOWN = "shutdown"

    def __init__(self, instance_id: int, try_number: int) -> None:
        self.instance_id = instance_id
        self.try_number = try_number
        self.interval = settings.FLOWFORGE_HEARTBEAT_SECS
        self.reason: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{instance_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._done.set()
        # Bounded: a renewal stuck on an unreachable database must not hold the result.
        self._thread.join(timeout=self.interval + 5)

    def should_stop(self) -> bool:
        if self.reason is None and _shutdown.is_set():
            log.warning("worker shutting down: stopping task instance %s", self.instance_id)
            self.reason = self.SHUTDOWN
        return self.reason is not None

    def renew(self) -> bool:
        """Push the lease forward; False when the attempt is no longer ours to run."""
        close_old_connections()  # drops a connection that broke, so this beat reconnects
        lease = timezone.now() + timezone.timedelta(seconds=settings.FLOWFORGE_LEASE_SECS)
        try:
            return bool(
                TaskInstance.objects.filter(
                    id=self.instance_id, try_number=self.try_number, state=TaskState.RUNNING
                ).update(lease_expires_at=lease)
            )
        except DatabaseError:  # the database is away: keep running, try again next beat
            log.warning("could not renew the lease of task instance %s", self.instance_id)
            return True

    def _beat(self) -> None:
        try:
            while not self._done.wait(self.interval):
                if not self.renew():
                    self.reason = self.reason or self.MOVED_ON
                    return
        finally:
            connection.close()  # this thread's own connection


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
        _shutdown.set()  # Heartbeat.should_stop reports it to the executor
        return
    # Idle, or told a second time: end the process as billiard would have.
    if callable(_previous_sigterm):
        _previous_sigterm(signum, frame)
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
