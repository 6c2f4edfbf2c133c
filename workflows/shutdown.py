"""A worker's graceful shutdown: running attempts get a grace period, then are handed back.

On SIGTERM (or Ctrl-C) a worker stops taking messages. An attempt running in it has
FLOWFORGE_SHUTDOWN_GRACE_SECS to finish; one still running after that is stopped (its
process group killed, a python callable interrupted) and handed back: its instance goes
back to `queued` with its try given back and its message is sent again, so the next worker
runs the same try (CONTRACT section 5). A shutdown is never the task's failure.

Each process that runs attempts keeps its own grace period, started by the first SIGTERM
it gets. Prefork pool processes get theirs from the worker's main process as soon as the
shutdown begins (`forward_shutdown` below), or straight from a process manager that
signals every process (systemd): either way, only the first one counts, so the grace is
never cut short or doubled.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable

from billiard.process import current_process
from celery.signals import worker_process_init, worker_shutting_down
from celery.worker import state as worker_state
from django.conf import settings

from .executors import python as python_executor

log = logging.getLogger(__name__)

_grace_started = threading.Event()
_grace_over = threading.Event()
_busy = threading.Event()
_lock = threading.Lock()
_previous_sigterm: Callable | int | None = None


def grace_over() -> bool:
    """Whether attempts in this process must stop now: the shutdown's grace has passed."""
    return _grace_over.is_set()


@contextlib.contextmanager
def attempt_running():
    """Marks this process busy with an attempt, so that a SIGTERM starts the grace
    period instead of ending the process."""
    _busy.set()
    try:
        yield
    finally:
        _busy.clear()


def begin_grace() -> None:
    """Start this process's grace period, once: when it ends, running attempts stop."""
    with _lock:
        if _grace_started.is_set():
            return
        _grace_started.set()
    grace = settings.FLOWFORGE_SHUTDOWN_GRACE_SECS
    log.warning("worker shutting down: running attempts have %g s to finish", grace)
    timer = threading.Timer(grace, _end_grace)
    timer.daemon = True
    timer.start()


def _end_grace() -> None:
    _grace_over.set()  # executors polling Lease.should_stop stop their process group
    python_executor.stop_running_callable()  # a callable polls nothing: interrupt it


# --- in prefork pool processes --------------------------------------------------------


def install_sigterm_handler() -> None:
    """Take over SIGTERM in a prefork pool process; elsewhere (the worker's main process
    with the solo or threads pool, a test) leave it alone. Idempotent, so it can run before
    every task: billiard installs its own handler after the pool process starts."""
    global _previous_sigterm
    if not in_pool_process():
        return
    current = signal.getsignal(signal.SIGTERM)
    if current is not _on_sigterm:
        _previous_sigterm = current
        signal.signal(signal.SIGTERM, _on_sigterm)


@worker_process_init.connect
def _on_pool_process_start(**kwargs) -> None:
    # A process group of its own: a process manager that signals the worker's group
    # (honcho on Ctrl-C, `kill -TERM -PGID`) reaches the main process only, which then
    # shuts its pool down in order. Celery makes pool processes die with their main
    # process (PR_SET_PDEATHSIG), so none is left behind if it is killed.
    os.setpgid(0, 0)
    install_sigterm_handler()


def in_pool_process() -> bool:
    return current_process()._name != "MainProcess"


def _on_sigterm(signum: int, frame) -> None:
    if _busy.is_set():
        begin_grace()
        return
    # Idle: end the process as billiard would have. (Not os._exit(0): an idle pool process
    # may hold the pool's queue lock, and billiard only recovers it from a process that
    # died of a signal; the worker then hangs in its pool shutdown.)
    if callable(_previous_sigterm):
        _previous_sigterm(signum, frame)
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


# --- in the worker's main process -----------------------------------------------------


@worker_shutting_down.connect
def forward_shutdown(sender, how: str = "Warm", **kwargs) -> None:
    """On a warm shutdown, start the grace period of every attempt this worker runs.

    Celery's own warm shutdown would wait for running tasks forever; its cold shutdown
    (a second Ctrl-C, SIGQUIT) ends them at once, and the reconciler then finds them lost.
    """
    if how != "Warm":
        return
    pids = {request.worker_pid for request in list(worker_state.active_requests)} - {None}
    for pid in pids:
        if pid == os.getpid():  # solo or threads pool: the attempts run in this process
            begin_grace()
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
