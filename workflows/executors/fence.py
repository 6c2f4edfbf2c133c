"""Attempts' process groups die with the worker process that started them.

An attempt's shell command or script runs in a process group of its own (so that a
timeout or a cancel can kill all of it). Nothing in the kernel kills that group when the
worker process dies (SIGKILL, OOM killer, its main process killed): it would live on and
keep writing while the reconciler retries the task elsewhere.

So each process that runs attempts starts one fence process beside it: a small process
in a session of its own that holds a pipe from its parent. The parent writes each
attempt group it starts ("+PGID") and ends ("-PGID"). When the pipe reaches end of file,
the parent is gone, however it died: the fence kills every group still registered
(SIGTERM, then SIGKILL after KILL_GRACE_SECS) and exits.

Standard library only: run as a script (`python fence.py`), it imports nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

KILL_GRACE_SECS = 2.0


class Fence:
    """The client side, in the process that runs attempts: one fence process, started
    on first use and again if it is gone (after a fork, or killed)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._owner: int | None = None

    @contextlib.contextmanager
    def guard(self, pgid: int) -> Iterator[None]:
        """Registers the process group `pgid` for as long as the block runs."""
        self._send(f"+{pgid}\n")
        try:
            yield
        finally:
            self._send(f"-{pgid}\n")

    def _send(self, line: str) -> None:
        with self._lock:
            for _ in range(2):  # a fence that died is replaced once
                stdin = self._running().stdin
                assert stdin is not None  # started with a pipe
                try:
                    stdin.write(line.encode())
                    stdin.flush()
                    return
                except (BrokenPipeError, ValueError):
                    self._process = None

    def _running(self) -> subprocess.Popen:
        if self._process is None or self._owner != os.getpid() or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", __file__],  # isolated, stdlib only
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                start_new_session=True,  # outside every attempt's group, and ours
                close_fds=True,
            )
            self._owner = os.getpid()  # a forked child must start its own fence
        return self._process


def _kill_groups(groups: set[int]) -> None:
    """SIGTERM to every group, then SIGKILL to those still there after the grace."""
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE_SECS
    while groups and time.monotonic() < deadline:
        time.sleep(0.05)
        groups = {pgid for pgid in groups if _group_exists(pgid)}
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def main() -> None:
    """The fence process: follow the registrations until the parent goes, then kill."""
    # Signals meant for the worker (a terminal's Ctrl-C, a service manager's SIGTERM to
    # every process) must not take the fence away before the worker itself is gone.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    groups: set[int] = set()
    for line in sys.stdin.buffer:
        sign, pgid = line[:1], line[1:].strip()
        if pgid.isdigit():
            (groups.add if sign == b"+" else groups.discard)(int(pgid))
    _kill_groups(groups)  # end of file: the process that registered them is gone


if __name__ == "__main__":
    main()
