"""Keeping the leases of running attempts: one background thread per worker process.

Every executor, in-process python callables and HTTP requests included, keeps its lease
this way. A renewal is guarded on the attempt still being ours and running; when it
matches no row (the run was cancelled, or the reconciler gave the attempt up) the
attempt's `should_stop` turns true and executors that poll it stop their process group.

An attempt whose lease could not be renewed for as long as it lasts (the database out of
reach) fences itself the same way, before the lease expires: the reconciler may then call
its worker lost and retry it, and a retry must never overlap it (CONTRACT section 2).

One long-lived thread serves every attempt of its process, rather than a thread per
attempt: starting and joining a thread cost a no-op task about 0.5 ms, a sixth of its
time in the worker (bench/results/profile.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from runs import states

from .executors.fence import KILL_GRACE_SECS
from .executors.live import LiveOutput

log = logging.getLogger(__name__)


class Lease:
    """The lease of one running attempt, kept while the `with` block runs.

    `should_stop()` turns true when the attempt is no longer ours (`reason` MOVED_ON) or
    when `is_shutting_down()` does (`reason` SHUTDOWN). Executors that poll nothing (a
    python callable) are stopped by `on_stop`, called from the lease thread when the
    attempt is found no longer ours.
    """

    MOVED_ON = "moved on"
    SHUTDOWN = "shutdown"
    LOST = "lease lost"

    def __init__(
        self,
        instance_id: int,
        try_number: int,
        is_shutting_down: Callable[[], bool],
        on_stop: Callable[[], object] | None = None,
        log_fields: dict | None = None,
        live_output: LiveOutput | None = None,
    ) -> None:
        self.instance_id = instance_id
        self.try_number = try_number
        self.log_fields = log_fields or {}
        self.reason: str | None = None
        self.pgid: int | None = None  # the attempt's process group, once it runs one
        self._is_shutting_down = is_shutting_down
        self._on_stop = on_stop
        self._live_output = live_output  # the attempt's output so far, sent with renewals

    def __enter__(self) -> Lease:
        _keeper().track(self)
        return self

    def __exit__(self, *exc_info) -> None:
        _keeper().untrack(self)

    def should_stop(self) -> bool:
        if self.reason is None and self._is_shutting_down():
            log.warning(
                "worker shutting down: stopping task instance %s",
                self.instance_id,
                extra=self.log_fields,
            )
            self.reason = self.SHUTDOWN
        return self.reason is not None

    def stop_reason(self) -> str | None:
        """Why the attempt was told to stop (MOVED_ON, SHUTDOWN), or None."""
        self.should_stop()
        return self.reason

    def stop(self, reason: str) -> None:
        """The attempt must stop (MOVED_ON, LOST): say why, and stop what polls nothing."""
        self.reason = reason
        if self._on_stop is not None:
            self._on_stop()

    def stop_again(self) -> None:
        """Stop what polls nothing once more, every interval while the attempt runs on:
        Python drops the exception a stop signal raises while a `__del__` or a weakref
        callback runs in the callable, which would then run on unstopped."""
        if self._on_stop is not None:
            self._on_stop()

    def set_process_group(self, pgid: int) -> None:
        """Recorded with the next renewal, for whoever must fence the attempt."""
        self.pgid = pgid

    def renew(self) -> bool | None:
        """Push the lease forward. False when the attempt is no longer ours to run; None
        when the database could not be reached (the lease stays as it was)."""
        lease = timezone.now() + timezone.timedelta(seconds=settings.FLOWFORGE_LEASE_SECS)
        try:
            live = self._live_output.take() if self._live_output is not None else None
            return states.renew_lease(self.instance_id, self.try_number, lease, self.pgid, live)
        except DatabaseError:  # the database is away: keep running, try again next beat
            log.warning(
                "could not renew the lease of task instance %s",
                self.instance_id,
                extra=self.log_fields,
            )
            connection.close()  # so the next beat reconnects
            return None


class LeaseKeeper:
    """Renews the tracked leases every FLOWFORGE_HEARTBEAT_SECS from a daemon thread,
    started with the first lease. The thread keeps its own database connection.

    A lease not renewed for `lease_secs` less one interval (the claim granted it a moment
    before it was tracked) is given up: its attempt stops (Lease.LOST)."""

    def __init__(self, interval: float, lease_secs: float) -> None:
        self.interval = interval
        self.give_up_after = max(lease_secs - interval, interval)
        # id(lease) -> [lease, monotonic time of the last renewal try, of the last renewal]
        self._leases: dict[int, list] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def track(self, lease: Lease) -> None:
        with self._lock:
            now = time.monotonic()
            self._leases[id(lease)] = [lease, now, now]
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="leases", daemon=True)
                self._thread.start()

    def untrack(self, lease: Lease) -> None:
        with self._lock:
            self._leases.pop(id(lease), None)

    def _due(self) -> list[list]:
        """Entries of leases granted or last tried at least one interval ago, stamped as
        tried now. The claim grants FLOWFORGE_LEASE_SECS, so an attempt shorter than one
        interval is never renewed."""
        now = time.monotonic()
        due = []
        with self._lock:
            for entry in self._leases.values():
                if entry[1] <= now - self.interval:
                    entry[1] = now
                    due.append(entry)
        return due

    def _run(self) -> None:
        while True:
            time.sleep(self.interval / 4)  # a renewal is at most a quarter interval late
            for entry in self._due():
                self._keep(entry)

    def _keep(self, entry: list) -> None:
        lease, tried_at, renewed_at = entry
        if lease.reason is not None:
            lease.stop_again()
            return
        renewed = lease.renew()
        if renewed:
            entry[2] = tried_at
        elif renewed is False:
            lease.stop(Lease.MOVED_ON)
        elif tried_at - renewed_at >= self.give_up_after:
            log.warning(
                "task instance %s: lease not renewed for %.0f s; stopping the attempt so that "
                "its retry cannot overlap it",
                lease.instance_id,
                tried_at - renewed_at,
                extra=lease.log_fields,
            )
            lease.stop(Lease.LOST)


def fence_grace() -> timedelta:
    """How long after its lease expired an attempt may still be stopping itself: one
    lease-keeping interval to notice, and the time to kill its process group. A lost
    attempt is retried (workflows/reconciler.py), and a stopped one's task claimed again
    (workflows/attempts.py), only once that has passed too."""
    return timedelta(seconds=settings.FLOWFORGE_HEARTBEAT_SECS + KILL_GRACE_SECS)


_keeper_instance: LeaseKeeper | None = None
_keeper_lock = threading.Lock()


def _keeper() -> LeaseKeeper:
    global _keeper_instance
    with _keeper_lock:
        if _keeper_instance is None:
            _keeper_instance = LeaseKeeper(
                settings.FLOWFORGE_HEARTBEAT_SECS, settings.FLOWFORGE_LEASE_SECS
            )
        return _keeper_instance
