"""The completion handler: record an attempt, move its instance on, release what it unblocks.

Two paths, chosen in `_complete`. The fast path (a success whose downstream tasks are all
all_success) is runs/states' finish statement alone, with no transaction around it; every
other outcome runs in one transaction. Downstream instances are counted down with one
UPDATE ... RETURNING per group (the latch), so the cost of a completion depends on the
task's own fan-out, never on the size of its run.
"""

from __future__ import annotations

import dataclasses
import logging

from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from django.utils import timezone

from dags.boundary import clean, clean_text
from dags.compiled import CompiledDag
from dags.dag_spec import TaskSpec
from runs import states, telemetry
from runs.cascade import carry_on
from runs.messages import (
    TaskMessage,
    message_queued_at,
    publish_dead_letter_on_commit,
    publish_on_commit,
)
from runs.services import republish
from runs.states import Claim, TaskState

from .executors import ExecutionResult
from .retry import retry_delay

log = logging.getLogger(__name__)


def complete_attempt(claim: Claim, result: ExecutionResult, compiled: CompiledDag) -> str | None:
    """Record an ended attempt and move its instance on: the worker calls this when an
    attempt ends, the reconciler when it gives a lost one up.

    Returns the state the instance moved to, or None if it had been moved already.

    The attempt's text crosses the storage boundary first (dags/boundary.py: NUL shown as
    ␀, lone surrogates as �). Should storing its output or error still fail, its outcome
    is stored without them, with a note: left unrecorded, its lease would expire and the
    reconciler would run it again as "worker lost".
    """
    result = _storable(result)
    try:
        return _complete(claim, result, compiled)
    except (OperationalError, InterfaceError):
        raise  # the database is away: the worker waits for it and tries again
    except (DatabaseError, ValueError, TypeError) as exc:
        if not (result.stdout or result.stderr or result.error or result.output is not None):
            raise
        log.exception(
            "%s/%s try %s: storing its output failed",
            *_names(claim, compiled),
            extra=claim.log_fields(compiled.dag_id),
        )
        return _complete(claim, _without_text(result, exc), compiled)


def _names(claim: Claim, compiled: CompiledDag) -> tuple:
    return compiled.dag_id, claim.task_id, claim.try_number


def _storable(result: ExecutionResult) -> ExecutionResult:
    return dataclasses.replace(
        result,
        stdout=clean_text(result.stdout),
        stderr=clean_text(result.stderr),
        error=clean_text(result.error),
        output=clean(result.output),
    )


def _without_text(result: ExecutionResult, exc: Exception) -> ExecutionResult:
    note = f"the attempt's output and error could not be stored ({type(exc).__name__}: {exc})"
    return dataclasses.replace(
        result, stdout="", stderr="", output=None, error=clean_text(note.splitlines()[0])
    )


def _complete(claim: Claim, result: ExecutionResult, compiled: CompiledDag) -> str | None:
    target, retry_in = _next_state(claim, result, compiled.tasks[claim.task_id])
    if target == TaskState.SUCCESS and compiled.queues_all_downstream(claim.task_id):
        return _complete_fast(claim, result, compiled)
    with transaction.atomic():
        return _complete_in_transaction(claim, result, compiled, target, retry_in)


def _complete_fast(claim: Claim, result: ExecutionResult, compiled: CompiledDag) -> str | None:
    """The fast path, for the common case: a success whose downstream tasks are all
    all_success. finish_task's one statement does everything, outside any transaction;
    only a downstream task that can no longer run (an upstream failed or was skipped)
    needs one more, transactional, step."""
    finish = _finish(claim, result, compiled, TaskState.SUCCESS)
    if not finish.moved:
        _ended_late(claim, result)
        return None
    _count_attempt(claim, compiled, TaskState.SUCCESS)
    _wake_waiting(claim, finish)
    if any(latch.state == TaskState.PENDING and not latch.pending for latch in finish.latches):
        with transaction.atomic():
            carry_on(claim.run_id, compiled, finish.latches, run_state=finish.run_state)
    else:
        carry_on(claim.run_id, compiled, finish.latches, run_state=finish.run_state)
    return TaskState.SUCCESS


def _complete_in_transaction(
    claim: Claim, result: ExecutionResult, compiled: CompiledDag, target: str, retry_in: float
) -> str | None:
    """Every other outcome; the caller holds the transaction."""
    finish = _finish(claim, result, compiled, target, retry_in)
    if not finish.moved:
        _ended_late(claim, result)
        return None
    _count_attempt(claim, compiled, target)
    _wake_waiting(claim, finish)
    if target == TaskState.UP_FOR_RETRY:
        queue = compiled.tasks[claim.task_id].queue
        publish_on_commit([TaskMessage(claim.instance_id, claim.try_number, queue, retry_in)])
        telemetry.tasks_enqueued(compiled.dag_id, 1)
        return target
    if target == TaskState.FAILED:
        _dead_letter(claim, compiled, result)
    carry_on(claim.run_id, compiled, finish.latches, run_state=finish.run_state)
    return target


def _count_attempt(claim: Claim, compiled: CompiledDag, target: str) -> None:
    """Counted in this process, from what the claim and the task message say: no query.
    An attempt the reconciler gives up has no message here, so no queue wait."""
    telemetry.attempt_ended(compiled.dag_id, target, claim.started_at, message_queued_at())


def _ended_late(claim: Claim, result: ExecutionResult) -> None:
    """The attempt ended after its instance was moved on: record it, and, when a cancel,
    timeout or repair stopped it, let the task's next attempt start (its messages were
    refused while this one might still run)."""
    states.record_late_attempt(claim, **_record(result))
    republish(states.end_stop(claim.instance_id, claim.try_number))


def _finish(
    claim: Claim,
    result: ExecutionResult,
    compiled: CompiledDag,
    target: str,
    retry_in: float = 0.0,
) -> states.Finish:
    finish = states.finish_task(
        claim,
        target,
        downstream=compiled.downstream[claim.task_id],
        queue_ids=compiled.all_success_tasks,
        next_retry_at=(timezone.now() + timezone.timedelta(seconds=retry_in) if retry_in else None),
        output=result.output,
        **_record(result),
    )
    log.info(
        "%s/%s try %s: %s %s",
        compiled.dag_id,
        claim.task_id,
        claim.try_number,
        target if finish.moved else "ended after the instance was moved on; recorded only",
        result.error,
        extra=claim.log_fields(compiled.dag_id),
    )
    return finish


def _wake_waiting(claim: Claim, finish: states.Finish) -> None:
    """Instances the finish woke (the slots it gave back) get their messages again."""
    republish(finish.woken)


def _record(result: ExecutionResult) -> dict:
    """What an attempt's row records of its result."""
    return {
        "pgid": result.pgid,
        "exit_code": result.exit_code,
        "stdout": result.stdout,
        "stderr": result.stderr,
        "error": result.error,
    }


def _next_state(claim: Claim, result: ExecutionResult, task: TaskSpec) -> tuple[str, float]:
    if result.succeeded:
        return TaskState.SUCCESS, 0.0
    if claim.try_number < claim.max_tries:
        # The backoff counts the tries of the current set of 1 + retries: a task cleared
        # or retried from the dead-letter queue starts afresh (CONTRACT section 9).
        tries_in_set = claim.try_number - (claim.max_tries - 1 - task.retries)
        delay = retry_delay(
            max(tries_in_set, 1),
            task.retry_delay_secs,
            task.retry_max_delay_secs,
            task.backoff,
        )
        return TaskState.UP_FOR_RETRY, max(delay, 0.001)
    return TaskState.FAILED, 0.0


def _dead_letter(claim: Claim, compiled: CompiledDag, result: ExecutionResult) -> None:
    entry = states.record_dead_letter(claim, compiled.dag_id, result.error)
    telemetry.task_dead_lettered(compiled.dag_id)
    publish_dead_letter_on_commit(
        {
            "id": entry.id,
            "run_id": claim.run_id,
            "dag_id": compiled.dag_id,
            "task_id": claim.task_id,
            "attempts": claim.try_number,
            "error": result.error,
        }
    )
