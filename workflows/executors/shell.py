"""Shell tasks: run `command` with /bin/sh -c in its own process group."""

from __future__ import annotations

from . import AttemptContext, ExecutionResult
from .process import attempt_env, run_attempt


def run(ctx: AttemptContext) -> ExecutionResult:
    command = ctx.task.command
    if not command:
        return ExecutionResult(succeeded=False, error="shell task has no 'command' to run")
    return run_attempt(["/bin/sh", "-c", command], ctx, what="command", env=attempt_env(ctx))
