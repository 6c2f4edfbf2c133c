"""A worker's graceful shutdown: running attempts get a grace period, then are handed back.

On SIGTERM (or Ctrl-C) a worker stops taking messages. An attempt running in it has
FLOWFORGE_SHUTDOWN_GRACE_SECS to finish; one still running after that is stopped (its
process group killed, a python callable interrupted) and handed back: its instance goes
back to `queued` with its try given back and its message is sent again, so the next worker
runs the same try (CONTRACT section 5). A shutdown is never the task's failure.

Each process that runs attempts keeps its own grace period, started once. Prefork pool
processes are told by the worker's main process as soon as the shutdown begins, with
GRACE_SIGNAL (`forward_shutdown` below), or by a process manager that sends SIGTERM to
every process (systemd). GRACE_SIGNAL is a signal of its own because a pool process may
be idle when it arrives: then it must live on until the pool tells it to go, for a pool
process that dies while waiting for work can take the pool's queue lock with it, and the
worker hangs in its pool shutdown. A message that reaches a pool process once the
shutdown began is not started: it goes back to the broker (`starting_refused`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

from billiard.process import current_process
from celery.signals import worker_process_init, worker_shutdown, worker_shutting_down
from celery.worker import state as worker_state
from django.conf import settings

from .executors import python as python_executor
from .executors.process import process_table

log = logging.getLogger(__name__)

# A real-time signal nothing else uses (Linux); elsewhere SIGTERM, with its idle hazard.
GRACE_SIGNAL = signal.SIGRTMIN + 3 if hasattr(signal, "SIGRTMIN") else signal.SIGTERM

_requested = threading.Event()  # told to shut down: attempts get a grace period
_grace_started = threading.Event()
_grace_over = threading.Event()
_busy = threading.Event()
_lock = threading.Lock()
_previous_sigterm: Callable | int | None = None


def grace_over() -> bool:
    """Whether attempts in this process must stop now: the shutdown's grace has passed."""
    return _grace_over.is_set()


def starting_refused() -> bool:
    """Whether this process is shutting down, so that a new attempt must not start."""
    return _requested.is_set()


@contextlib.contextmanager
def attempt_running():
    """Marks this process busy with an attempt: a SIGTERM then starts the grace period
    instead of ending the process."""
    _busy.set()
    try:
        yield
    finally:
        _busy.clear()


def begin_grace() -> None:
    """Start this process's grace period, once: when it ends, running attempts stop."""
    with _lock:
        _requested.set()
        if _grace_started.is_set():
            return
        _grace_started.set()
    grace = settings.FLOWFORGE_SHUTDOWN_GRACE_SECS
    if _busy.is_set():
        log.warning("worker shutting down: the running attempt has %g s to finish", grace)
    timer = threading.Timer(grace, _end_grace)
    timer.daemon = True
    timer.start()


def _end_grace() -> None:
    _grace_over.set()  # executors polling Lease.should_stop stop their process group
    python_executor.stop_running_callable()  # a callable polls nothing: interrupt it


# --- in prefork pool processes --------------------------------------------------------


@worker_process_init.connect
def _on_pool_process_start(**kwargs) -> None:
    # A process group of its own: a process manager that signals the worker's group
    # (honcho on Ctrl-C, `kill -TERM -PGID`) reaches the main process only, which then
    # shuts its pool down in order. Celery makes pool processes die with their main
    # process (PR_SET_PDEATHSIG), so none is left behind if it is killed.
    os.setpgid(0, 0)
    if GRACE_SIGNAL != signal.SIGTERM:
        signal.signal(GRACE_SIGNAL, _on_grace_signal)
    install_sigterm_handler()


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


def in_pool_process() -> bool:
    return current_process()._name != "MainProcess"


def _on_grace_signal(signum: int, frame) -> None:
    begin_grace()  # idle or not: the pool ends this process in order once it is idle


def _on_sigterm(signum: int, frame) -> None:
    if _busy.is_set():
        begin_grace()
        return
    # Idle, and told to stop by someone other than our main process: end the process as
    # billiard would have. (Not os._exit(0): billiard recovers the queue lock a waiting
    # process holds only from one that died of a signal.)
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
    begin_grace()  # the solo and threads pools run attempts in this process
    for pid in _pool_processes():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, GRACE_SIGNAL)


def _pool_processes() -> set[int]:
    """The worker's pool processes: its children (idle ones too, which may yet be handed
    a message already on its way), or where /proc is missing those running tasks."""
    table = process_table()
    if table is not None:
        return {pid for pid, state, parent, _group in table if parent == os.getpid()}
    busy = {request.worker_pid for request in list(worker_state.active_requests)}
    return busy - {None, os.getpid()}


@worker_shutdown.connect
def exit_once_stopped(sender, **kwargs) -> None:
    """The worker stopped in order: its pool is joined, its messages acknowledged, its
    broker connection closed. What Python would still do at exit is run billiard's pool
    finalizer again, which waits out its timeout thread's one-second sleep; on Ctrl-C
    under honcho (5 s before it sends SIGKILL) that second matters, so exit now.

    Only in a worker run as a program (`celery worker`, whose main thread stops it); a
    worker embedded in another program, stopped from a thread of its own, is left alone.
    """
    if in_pool_process() or threading.current_thread() is not threading.main_thread():
        return
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(getattr(sender, "exitcode", None) or 0)
