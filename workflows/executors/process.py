"""Run a child process for one attempt: its own process group, timeout, cancel, bounded output.

Shared by the shell and python-script executors. The attempt owns its process group: when
the attempt ends (normally, by timeout or by cancel) every process still in the group is
killed, so nothing an attempt started outlives it or keeps its output pipes open. A command
that must leave a daemon behind has to detach it into its own session (`setsid`).
"""

from __future__ import annotations

import codecs
import contextlib
import io
import json
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import TAIL_CHARS, AttemptContext, ExecutionResult, format_seconds
from .fence import KILL_GRACE_SECS, Fence
from .live import LiveOutput

# Kills this process's attempt groups should this process die (see fence.py).
FENCE = Fence()

CANCEL_POLL_SECS = 0.25
# After the group is killed, output still in the pipes is read for at most this long; only a
# process that escaped the group (setsid) can keep a pipe open past it.
DRAIN_SECS = 2.0
# Without a pidfd the leader's exit is noticed by polling, so poll often enough to stay quick.
FALLBACK_POLL_SECS = 0.02
READ_CHUNK = 64 * 1024


class TailBuffer(io.TextIOBase):
    """A writable text stream that keeps only the last `limit` characters written."""

    def __init__(self, limit: int = TAIL_CHARS) -> None:
        super().__init__()
        self._limit = limit
        self._text = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._text += text
        # Trim only once the text doubles the limit, so trimming costs O(1) amortized per char.
        if len(self._text) > 2 * self._limit:
            self._text = self._text[-self._limit :]
        return len(text)

    def getvalue(self) -> str:
        return self._text[-self._limit :]


class _StreamTail:
    """Decodes bytes from one pipe (UTF-8, bad bytes replaced) into a bounded tail."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.tail = TailBuffer()

    def feed(self, data: bytes) -> str:
        """Take `data` in; returns the text it decoded to."""
        text = self._decoder.decode(data)
        self.tail.write(text)
        return text

    def finish(self) -> str:
        self.tail.write(self._decoder.decode(b"", final=True))
        return self.tail.getvalue()


@dataclass
class ProcessOutcome:
    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    cancelled: bool = False
    pgid: int | None = None


def process_table() -> list[tuple[int, str, int, int]] | None:
    """(pid, state, parent pid, process group) of every process, from /proc; None where
    there is no /proc (not Linux)."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    rows = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:  # exited while we looked
            continue
        # The fields after the command name, which is in parentheses and may hold spaces.
        state, parent, group = text.rsplit(")", 1)[1].split()[:3]
        rows.append((int(entry.name), state, int(parent), int(group)))
    return rows


def group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs. Zombies do not count: they are dead.
    One orphaned by the group's leader waits for init to collect it, which can take
    seconds, and signalling the group would count it as alive all that time."""
    table = process_table()
    if table is not None:
        return any(group == pgid and state not in "ZX" for _pid, state, _p, group in table)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member that changed uid still exists
        pass
    return True


def kill_attempt_group(pgid: int, run_id: str, task_id: str, try_number: int) -> bool:
    """Kill what is left of an attempt's process group on this host, if it still runs
    that attempt: one of its processes has the attempt's FLOWFORGE_RUN_ID, _TASK_ID and
    _TRY_NUMBER in its environment (so a group id since reused is left alone). SIGTERM,
    then SIGKILL after KILL_GRACE_SECS. Returns whether anything was killed."""
    table = process_table() or []
    members = [pid for pid, state, _parent, group in table if group == pgid and state not in "ZX"]
    marker = {
        b"FLOWFORGE_RUN_ID=" + str(run_id).encode(),
        b"FLOWFORGE_TASK_ID=" + task_id.encode(),
        b"FLOWFORGE_TRY_NUMBER=" + str(try_number).encode(),
    }
    if not any(marker <= _environment(pid) for pid in members):
        return False
    for signum in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signum)
        deadline = time.monotonic() + KILL_GRACE_SECS
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
    return True


def _environment(pid: int) -> set[bytes]:
    try:
        return set(Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
    except OSError:  # gone, or not ours to read
        return set()


def _open_pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


class _GroupSupervisor:
    """Watches one process group: reads its output, notices the leader's exit, kills the group."""

    def __init__(self, proc: subprocess.Popen, live: LiveOutput | None = None) -> None:
        assert proc.stdout is not None and proc.stderr is not None  # run with PIPEs
        self.proc = proc
        self.live = live
        self.stdout, self.stderr = proc.stdout, proc.stderr
        self.streams = {self.stdout.fileno(): _StreamTail(), self.stderr.fileno(): _StreamTail()}
        self.selector = selectors.DefaultSelector()
        for fd in self.streams:
            self.selector.register(fd, selectors.EVENT_READ)
        # A pidfd becomes readable when the leader exits, so the select below wakes up at once.
        self.pidfd = _open_pidfd(proc.pid)
        if self.pidfd is not None:
            self.selector.register(self.pidfd, selectors.EVENT_READ)

    def leader_exited(self) -> bool:
        # WNOWAIT leaves the leader a zombie: its pid (the group id) cannot be reused while we
        # still signal the group.
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        try:
            return os.waitid(os.P_PID, self.proc.pid, flags) is not None
        except ChildProcessError:
            return True

    def wait_for_leader(
        self, deadline: float | None, should_cancel: Callable[[], bool] | None = None
    ) -> str | None:
        """Reads output until the leader exits; returns "timeout" or "cancel" if it stops first."""
        next_cancel_check = 0.0
        while not self.leader_exited():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return "timeout"
            if should_cancel is not None and now >= next_cancel_check:
                if should_cancel():
                    return "cancel"
                next_cancel_check = now + CANCEL_POLL_SECS
            step = CANCEL_POLL_SECS if self.pidfd is not None else FALLBACK_POLL_SECS
            if deadline is not None:
                step = min(step, deadline - now)
            self._pump(step)
        return None

    def wait_for_group(self, deadline: float) -> None:
        """Reads output until every process in the group has exited or the deadline passes."""
        while (remaining := deadline - time.monotonic()) > 0:
            if self.proc.returncode is None and self.leader_exited():
                # Reaped now so a dead leader does not keep the group looking alive.
                self._stop_watching_leader()
                self.proc.wait()
            if self.proc.returncode is not None and not self._group_exists():
                return
            step = CANCEL_POLL_SECS if self.pidfd is not None else FALLBACK_POLL_SECS
            self._pump(min(step, remaining))

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)

    def drain_and_close(self) -> tuple[str, str]:
        """Reads what is left in the pipes (bounded in time), then closes them."""
        self._stop_watching_leader()
        deadline = time.monotonic() + DRAIN_SECS
        while self.selector.get_map() and time.monotonic() < deadline:
            self._pump(deadline - time.monotonic())
        self.selector.close()
        self.stdout.close()
        self.stderr.close()
        stdout_tail, stderr_tail = (stream.finish() for stream in self.streams.values())
        return stdout_tail, stderr_tail

    def _group_exists(self) -> bool:
        return group_alive(self.proc.pid)

    def _stop_watching_leader(self) -> None:
        # Once the leader has exited its pidfd stays readable and would turn select into a spin.
        if self.pidfd is not None:
            self.selector.unregister(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = None

    def _pump(self, timeout: float) -> None:
        if not self.selector.get_map():
            time.sleep(max(timeout, 0))
            return
        for key, _events in self.selector.select(max(timeout, 0)):
            if key.fd == self.pidfd:
                continue
            data = os.read(key.fd, READ_CHUNK)
            if data:
                text = self.streams[key.fd].feed(data)
                if self.live is not None:
                    self.live.write(text)
            else:
                self.selector.unregister(key.fd)


def run_process(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: str | None = None,
    timeout_secs: float | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_start: Callable[[int], None] | None = None,
    live: LiveOutput | None = None,
) -> ProcessOutcome:
    """Runs argv in a new session and waits for it; raises OSError only if it cannot start.

    The session's process group dies with this process (fence.py); `on_start` is told its
    id (the leader's pid) as soon as it runs; `live` gets its output as it comes.
    """
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    with FENCE.guard(proc.pid):
        if on_start is not None:
            on_start(proc.pid)
        return _supervise(proc, timeout_secs, should_cancel, live)


def _supervise(
    proc: subprocess.Popen,
    timeout_secs: float | None,
    should_cancel: Callable[[], bool] | None,
    live: LiveOutput | None = None,
) -> ProcessOutcome:
    supervisor = _GroupSupervisor(proc, live)
    deadline = time.monotonic() + timeout_secs if timeout_secs else None
    stopped_by = None
    try:
        stopped_by = supervisor.wait_for_leader(deadline, should_cancel)
        if stopped_by is not None:
            supervisor.signal_group(signal.SIGTERM)
            supervisor.wait_for_group(time.monotonic() + KILL_GRACE_SECS)
    finally:
        supervisor.signal_group(signal.SIGKILL)
        stdout, stderr = supervisor.drain_and_close()
        exit_code = proc.wait()
    return ProcessOutcome(
        exit_code=exit_code,
        stdout=stdout,
        stderr=stderr,
        timed_out=stopped_by == "timeout",
        cancelled=stopped_by == "cancel",
        pgid=proc.pid,
    )


def attempt_env(ctx: AttemptContext) -> dict[str, str]:
    """The worker's environment plus the task's env and the FLOWFORGE_* attempt variables."""
    env = dict(os.environ)
    env.update({str(name): str(value) for name, value in ctx.task.env.items()})
    env["FLOWFORGE_RUN_ID"] = str(ctx.run_id)
    env["FLOWFORGE_TASK_ID"] = ctx.task.id
    env["FLOWFORGE_TRY_NUMBER"] = str(ctx.try_number)
    env["FLOWFORGE_PARAMS"] = json.dumps(ctx.params, default=str)
    return env


def describe_exit(exit_code: int) -> str:
    if exit_code >= 0:
        return f"exited with status {exit_code}"
    try:
        name = signal.Signals(-exit_code).name
    except ValueError:
        name = f"signal {-exit_code}"
    return f"was killed by {name}"


def run_attempt(
    argv: list[str], ctx: AttemptContext, *, what: str, env: dict[str, str], cwd: str | None = None
) -> ExecutionResult:
    """Runs argv for the attempt and turns the outcome into a result; `what` names it in errors."""
    timeout_secs = ctx.task.timeout_secs
    try:
        outcome = run_process(
            argv,
            env=env,
            cwd=cwd,
            timeout_secs=timeout_secs,
            should_cancel=ctx.should_cancel,
            on_start=ctx.on_process_group,
            live=ctx.live_output,
        )
    except OSError as exc:
        return ExecutionResult(succeeded=False, error=f"could not start {what}: {exc}")
    result = ExecutionResult(
        succeeded=False,
        exit_code=outcome.exit_code,
        stdout=outcome.stdout,
        stderr=outcome.stderr,
        timed_out=outcome.timed_out,
        cancelled=outcome.cancelled,
        pgid=outcome.pgid,
    )
    if outcome.timed_out:
        result.error = f"timed out after {format_seconds(timeout_secs or 0)} s"
    elif outcome.cancelled:
        result.error = "cancelled"
    elif outcome.exit_code != 0:
        result.error = f"{what} {describe_exit(outcome.exit_code or 0)}"
    else:
        result.succeeded = True
    return result
