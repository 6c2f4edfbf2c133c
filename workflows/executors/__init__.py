"""Run one attempt of one task and report what happened.

The engine builds an `AttemptContext`, calls `execute()`, and stores the `ExecutionResult`.
Pure Python on purpose (no Django, no Celery) so it can be tested and reused anywhere.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dags.dag_spec import TaskSpec

from .live import LiveOutput

TAIL_CHARS = 16_000


@dataclass
class AttemptContext:
    task: TaskSpec
    params: dict
    upstream_outputs: Mapping[str, Any]  # upstream task id -> output; may load on first read
    run_id: str = ""
    try_number: int = 1
    should_cancel: Callable[[], bool] | None = None
    # Where relative python scripts are found and callables imported from (the workers'
    # FLOWFORGE_DAGS_FOLDER); None: the current directory.
    dags_folder: str | None = None
    # Told the process group of the attempt's command or script once it runs.
    on_process_group: Callable[[int], None] | None = None
    # Where its output goes as it comes (both streams), for the live tail; None: nowhere.
    live_output: LiveOutput | None = None


@dataclass
class ExecutionResult:
    succeeded: bool
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str = ""
    output: Any = None
    timed_out: bool = False
    cancelled: bool = False
    pgid: int | None = None  # the process group of its command or script, if it ran one


def format_seconds(seconds: float) -> str:
    """`2` for 2.0, `0.5` for 0.5: how timeouts are written in error messages."""
    return f"{seconds:g}"


def execute(ctx: AttemptContext) -> ExecutionResult:
    """Runs the attempt with the executor for its task type; never raises for a failing task."""
    task_type = ctx.task.type
    run_attempt = _EXECUTORS.get(task_type)
    if run_attempt is None:
        known = ", ".join(sorted(_EXECUTORS))
        return ExecutionResult(
            succeeded=False, error=f"unknown task type {task_type!r} (expected one of: {known})"
        )
    try:
        return run_attempt(ctx)
    except Exception as exc:
        return ExecutionResult(
            succeeded=False,
            error=f"{task_type} executor failed: {type(exc).__name__}: {exc}".splitlines()[0],
            stderr=traceback.format_exc()[-TAIL_CHARS:],
        )


# Imported last: the executor modules import the dataclasses defined above.
from . import http, python, shell  # noqa: E402

_EXECUTORS: dict[str, Callable[[AttemptContext], ExecutionResult]] = {
    "shell": shell.run,
    "http": http.run,
    "python": python.run,
}
