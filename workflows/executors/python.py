"""Python tasks: a `callable` called in-process, or a `script` run with this interpreter.

Callables run in the worker's own process because they are meant to be cheap; a script gets
the same isolated, killable subprocess treatment as a shell command. A callable is stopped
(a cancel, a worker's shutdown) by a signal to its process, through stop_running_callable(). Capturing a callable's
prints swaps sys.stdout/sys.stderr process-wide, so under a threaded worker pool concurrent
callables can see each other's prints; prefork workers (one task per process) are exact.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import io
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from . import TAIL_CHARS, AttemptContext, ExecutionResult, format_seconds
from .live import Tee
from .process import TailBuffer, attempt_env, run_attempt


class CallableTimeout(BaseException):
    """Raised by SIGALRM inside a callable that ran too long.

    A BaseException so that a broad `except Exception` in user code cannot swallow it.
    """


class CallableStopped(BaseException):
    """Raised inside a callable that the worker asked to stop (a cancel, a shutdown)."""


# Seconds between a timeout's alarm and the next, should Python have dropped the first.
TIMEOUT_REPEAT_SECS = 0.5

# The signal that stops the callable running in a process's main thread: sent by that
# process's other threads through stop_running_callable().
STOP_SIGNAL = signal.SIGUSR2
_stoppable = threading.Event()  # a callable runs in the main thread and may be stopped


class CallableNotFound(Exception):
    """The task's `callable` could not be imported or is not callable."""


def run(ctx: AttemptContext) -> ExecutionResult:
    if ctx.task.callable:
        return run_callable(ctx)
    if ctx.task.script:
        return run_script(ctx)
    return ExecutionResult(
        succeeded=False, error="python task needs a 'callable' or a 'script' to run"
    )


def run_script(ctx: AttemptContext) -> ExecutionResult:
    script = ctx.task.script or ""
    path = os.path.abspath(os.path.join(ctx.dags_folder or os.getcwd(), script))
    if not os.path.isfile(path):
        where = "" if os.path.isabs(script) else " (relative to the DAGs folder)"
        return ExecutionResult(succeeded=False, error=f"script not found: {path}{where}")
    env = attempt_env(ctx)
    env["FLOWFORGE_UPSTREAM"] = json.dumps(dict(ctx.upstream_outputs), default=str)
    if ctx.dags_folder:  # a script imports its helpers from the DAGs folder, as a callable
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [ctx.dags_folder, env.get("PYTHONPATH")]))
    # Unbuffered, so the output tail is current even when the script is killed mid-run.
    env.setdefault("PYTHONUNBUFFERED", "1")
    argv = [sys.executable, path]
    return run_attempt(argv, ctx, what="script", env=env, cwd=os.path.dirname(path))


def run_callable(ctx: AttemptContext) -> ExecutionResult:
    spec = ctx.task.callable or ""
    try:
        func = resolve_callable(spec, ctx.dags_folder)
    except CallableNotFound as exc:
        return ExecutionResult(
            succeeded=False,
            error=str(exc),
            stderr=_traceback_tail(exc.__cause__) if exc.__cause__ else "",
        )
    kwargs = _keyword_arguments(ctx, _names_accepted_by(func))
    stdout, stderr = TailBuffer(), TailBuffer()
    outs: tuple[io.TextIOBase, io.TextIOBase] = (stdout, stderr)
    if ctx.live_output is not None:
        outs = (Tee(stdout, ctx.live_output), Tee(stderr, ctx.live_output))
    timeout_secs = ctx.task.timeout_secs
    result = ExecutionResult(succeeded=False)
    value = _UNSET
    try:
        with (
            contextlib.redirect_stdout(outs[0]),
            contextlib.redirect_stderr(outs[1]),
            _time_limit(timeout_secs),
            _stoppable_scope(ctx.should_cancel),
        ):
            value = func(**kwargs)
    except CallableTimeout:
        result.timed_out = True
        result.error = f"timed out after {format_seconds(timeout_secs or 0)} s"
    except CallableStopped:
        if value is _UNSET:  # a stop that came after the callable returned changes nothing
            result.cancelled = True
            result.error = "cancelled"
    except (Exception, SystemExit) as exc:
        result.error = _one_line(exc)
        stderr.write(_traceback_tail(exc))
    if value is not _UNSET:
        _set_output(result, spec, value)
    result.stdout, result.stderr = stdout.getvalue(), stderr.getvalue()
    return result


_UNSET = object()


def stop_running_callable() -> bool:
    """Interrupt the callable running in this process's main thread, if one is; it sees
    CallableStopped raised where it is. Safe to call from any thread, at any time.

    Returns whether a stop was sent.
    """
    if not _stoppable.is_set():
        return False
    os.kill(os.getpid(), STOP_SIGNAL)
    return True


def _on_stop_signal(signum: int, frame: Any) -> None:
    # Installed for good once set, so that a stop arriving just after the callable ended
    # is ignored rather than killing the process (SIGUSR2's default action).
    if _stoppable.is_set():
        raise CallableStopped


@contextlib.contextmanager
def _stoppable_scope(should_cancel: Callable[[], bool] | None) -> Iterator[None]:
    """Lets stop_running_callable() interrupt the body. Signals reach the main thread
    only, so elsewhere (a threads pool) the callable runs to its end."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(STOP_SIGNAL) is not _on_stop_signal:
        signal.signal(STOP_SIGNAL, _on_stop_signal)
    _stoppable.set()
    try:
        if should_cancel is not None and should_cancel():  # asked before it could start
            raise CallableStopped
        yield
    finally:
        _stoppable.clear()


def resolve_callable(spec: str, dags_folder: str | None = None) -> Callable[..., Any]:
    """Imports 'package.module:function' (the function part may be dotted, e.g. Class.method),
    from the installed packages or the DAGs folder, which goes last on sys.path so that a
    module there never shadows an installed one."""
    if dags_folder and dags_folder not in sys.path:
        sys.path.append(dags_folder)
    module_name, _, attr_path = spec.partition(":")
    if not module_name or not attr_path:
        raise CallableNotFound(f"callable {spec!r} must look like 'package.module:function'")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise CallableNotFound(
            f"cannot import module {module_name!r} for callable {spec!r}: {_one_line(exc)}"
        ) from exc
    for attr in attr_path.split("."):
        try:
            target = getattr(target, attr)
        except AttributeError as exc:
            raise CallableNotFound(
                f"callable {spec!r}: {module_name!r} has no attribute {attr_path!r}"
            ) from exc
    if not callable(target):
        raise CallableNotFound(f"callable {spec!r} is a {type(target).__name__}, not a function")
    return target


def argument_name(task_id: str) -> str:
    """The keyword an upstream task's output is passed under: `load-v1.2` -> `load_v1_2`."""
    return task_id.replace("-", "_").replace(".", "_")


def _keyword_arguments(ctx: AttemptContext, names: frozenset[str] | None) -> dict[str, Any]:
    """The run's params and upstream outputs that func accepts (all when names is None).

    Upstream outputs are read only when asked for: `upstream_outputs` may load them
    from the database on first access, a cost a function that takes none should not pay.
    An upstream id wins over a same-named param.
    """

    def wanted(name: str) -> bool:
        return names is None or name in names

    kwargs = {name: value for name, value in ctx.params.items() if wanted(name)}
    for task_id in ctx.upstream_outputs:
        if wanted(argument_name(task_id)):
            kwargs[argument_name(task_id)] = ctx.upstream_outputs[task_id]
    return kwargs


@functools.lru_cache(maxsize=1024)
def _accepted_names(func: Callable[..., Any]) -> frozenset[str] | None:
    """Keyword names func accepts, or None when it takes **kwargs (or has no signature)."""
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    keyword_kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(p.name for p in parameters if p.kind in keyword_kinds)


def _names_accepted_by(func: Callable[..., Any]) -> frozenset[str] | None:
    try:
        return _accepted_names(func)
    except TypeError:  # an unhashable callable object cannot be cached
        return _accepted_names.__wrapped__(func)


@contextlib.contextmanager
def _time_limit(timeout_secs: float | None) -> Iterator[None]:
    """Raises CallableTimeout in the body after timeout_secs, using SIGALRM.

    Python delivers signals only to the main thread and offers no safe way to interrupt
    another thread, so off the main thread the callable runs without a limit; there the
    worker's own hard time limit is the backstop. While the limit is armed it replaces any
    earlier ITIMER_REAL timer (e.g. pytest-timeout's), which is re-armed with its remaining
    time afterwards.

    Past the limit the alarm fires again every TIMEOUT_REPEAT_SECS until the body has
    ended: Python drops an exception raised by a signal handler while a `__del__` or a
    weakref callback runs ("Exception ignored in ..."), and the callable would run on.
    So a body's own cleanup after a timeout gets that long before it is cut short too.
    """
    if (
        not timeout_secs
        or timeout_secs <= 0
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return

    def raise_timeout(signum: int, frame: Any) -> None:
        raise CallableTimeout

    previous_handler = signal.signal(signal.SIGALRM, raise_timeout)
    started = time.monotonic()
    previous_delay, previous_interval = signal.setitimer(
        signal.ITIMER_REAL, timeout_secs, TIMEOUT_REPEAT_SECS
    )
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(
            signal.SIGALRM, previous_handler if previous_handler is not None else signal.SIG_DFL
        )
        if previous_delay > 0:
            remaining = max(previous_delay - (time.monotonic() - started), 0.001)
            signal.setitimer(signal.ITIMER_REAL, remaining, previous_interval)


def _set_output(result: ExecutionResult, spec: str, value: Any) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        result.error = f"return value of {spec} is not JSON-serializable: {exc}"
        return
    result.succeeded = True
    result.output = value


def _one_line(exc: BaseException) -> str:
    message = str(exc).strip()
    first_line = message.splitlines()[0] if message else ""
    return f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__


def _traceback_tail(exc: BaseException) -> str:
    tb = exc.__traceback__
    # Start at the user's code: our own frames are noise in a task's stderr.
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))[-TAIL_CHARS:]
