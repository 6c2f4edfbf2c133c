"""Keeping the leases of running attempts: one background thread per worker process.

Every executor, in-process python callables and HTTP requests included, keeps its lease
this way. A renewal is guarded on the attempt still being ours and running; when it
matches no row (the run was cancelled, or the reconciler gave the attempt up) the
attempt's `should_stop` turns true and executors that poll it stop their process group.

One long-lived thread serves every attempt of its process, rather than a thread per
attempt: starting and joining a thread cost a no-op task about 0.5 ms, a sixth of its
time in the worker (bench/results/profile.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from runs.models import TaskInstance
from runs.states import TaskState

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

    def __init__(
        self,
        instance_id: int,
        try_number: int,
        is_shutting_down: Callable[[], bool],
        on_stop: Callable[[], object] | None = None,
    ) -> None:
        self.instance_id = instance_id
        self.try_number = try_number
        self.reason: str | None = None
        self._is_shutting_down = is_shutting_down
        self._on_stop = on_stop

    def __enter__(self) -> Lease:
        _keeper().track(self)
        return self

    def __exit__(self, *exc_info) -> None:
        _keeper().untrack(self)

    def should_stop(self) -> bool:
        if self.reason is None and self._is_shutting_down():
            log.warning("worker shutting down: stopping task instance %s", self.instance_id)
            self.reason = self.SHUTDOWN
        return self.reason is not None

    def stop_reason(self) -> str | None:
        """Why the attempt was told to stop (MOVED_ON, SHUTDOWN), or None."""
        self.should_stop()
        return self.reason

    def moved_on(self) -> None:
        """The attempt is no longer ours: stop it."""
        self.reason = self.MOVED_ON
        if self._on_stop is not None:
            self._on_stop()

    def renew(self) -> bool:
        """Push the lease forward; False when the attempt is no longer ours to run."""
        lease = timezone.now() + timezone.timedelta(seconds=settings.FLOWFORGE_LEASE_SECS)
        try:
            return bool(
                TaskInstance.objects.filter(
                    id=self.instance_id, try_number=self.try_number, state=TaskState.RUNNING
                ).update(lease_expires_at=lease)
            )
        except DatabaseError:  # the database is away: keep running, try again next beat
            log.warning("could not renew the lease of task instance %s", self.instance_id)
            connection.close()  # so the next beat reconnects
            return True


class LeaseKeeper:
    """Renews the tracked leases every FLOWFORGE_HEARTBEAT_SECS from a daemon thread,
    started with the first lease. The thread keeps its own database connection."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        # id(lease) -> [lease, monotonic time of the grant or of its last renewal]
        self._leases: dict[int, list] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def track(self, lease: Lease) -> None:
        with self._lock:
            self._leases[id(lease)] = [lease, time.monotonic()]
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="leases", daemon=True)
                self._thread.start()

    def untrack(self, lease: Lease) -> None:
        with self._lock:
            self._leases.pop(id(lease), None)

    def _due(self) -> list[Lease]:
        """Leases granted or renewed at least one interval ago, stamped as renewed now.
        The claim grants FLOWFORGE_LEASE_SECS, so an attempt shorter than one interval
        is never renewed."""
        now = time.monotonic()
        due = []
        with self._lock:
            for entry in self._leases.values():
                if entry[1] <= now - self.interval:
                    entry[1] = now
                    due.append(entry[0])
        return due

    def _run(self) -> None:
        while True:
            time.sleep(self.interval / 4)  # a renewal is at most a quarter interval late
            for lease in self._due():
                if lease.reason is None and not lease.renew():
                    lease.moved_on()


_keeper_instance: LeaseKeeper | None = None
_keeper_lock = threading.Lock()


def _keeper() -> LeaseKeeper:
    global _keeper_instance
    with _keeper_lock:
        if _keeper_instance is None:
            _keeper_instance = LeaseKeeper(settings.FLOWFORGE_HEARTBEAT_SECS)
        return _keeper_instance
