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
from collections import defaultdict

from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from django.utils import timezone

from dags.boundary import clean, clean_text
from dags.compiled import CompiledDag
from dags.dag_spec import TaskSpec
from runs import states
from runs.messages import TaskMessage, publish_dead_letter_on_commit, publish_on_commit
from runs.services import admit_queued_runs, republish
from runs.states import Claim, Latch, TaskState

from .executors import ExecutionResult
from .retry import retry_delay
from .trigger_rules import Decision, decide

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
        states.record_late_attempt(claim, **_record(result))
        return None
    _wake_waiting(claim, finish)
    if any(latch.state == TaskState.PENDING and not latch.pending for latch in finish.latches):
        with transaction.atomic():
            _carry_on(claim.run_id, compiled, finish.latches, run_state=finish.run_state)
    else:
        _carry_on(claim.run_id, compiled, finish.latches, run_state=finish.run_state)
    return TaskState.SUCCESS


def _complete_in_transaction(
    claim: Claim, result: ExecutionResult, compiled: CompiledDag, target: str, retry_in: float
) -> str | None:
    """Every other outcome; the caller holds the transaction."""
    finish = _finish(claim, result, compiled, target, retry_in)
    if not finish.moved:
        states.record_late_attempt(claim, **_record(result))
        return None
    _wake_waiting(claim, finish)
    if target == TaskState.UP_FOR_RETRY:
        queue = compiled.tasks[claim.task_id].queue
        publish_on_commit([TaskMessage(claim.instance_id, claim.try_number, queue, retry_in)])
        return target
    if target == TaskState.FAILED:
        _dead_letter(claim, compiled, result)
    _carry_on(claim.run_id, compiled, finish.latches, run_state=finish.run_state)
    return target


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


def propagate(run_id: str, compiled: CompiledDag, finished: dict[str, str]) -> None:
    """Release the downstream tasks of instances that became final outside finish_task
    (the reconciler's repairs), and count them on their run.

    `finished` maps task ids to the final state they reached in this transaction.
    """
    failing = sum(state in TaskState.FAILING for state in finished.values())
    latches = _release(run_id, compiled, finished)
    _carry_on(run_id, compiled, latches, final=len(finished), failing=failing)


def _carry_on(
    run_id: str,
    compiled: CompiledDag,
    latches: list[Latch],
    *,
    final: int = 0,
    failing: int = 0,
    run_state: str | None = None,
) -> None:
    """Act on released latches, transitively: publish what was queued, let trigger rules
    decide the rest, and release in turn the downstream tasks of those that became
    upstream_failed or skipped. `final` and `failing` are instances already final but not
    yet counted on the run; `run_state` is set when the run has already ended."""
    ready: list[TaskMessage] = []
    while latches:
        moved = _decide(compiled, latches)
        ready += [
            TaskMessage(pk, 0, compiled.tasks[task_id].queue)
            for pk, task_id in moved.get(TaskState.QUEUED, [])
        ]
        frontier = {
            task_id: state
            for state in (TaskState.UPSTREAM_FAILED, TaskState.SKIPPED)
            for _, task_id in moved.get(state, [])
        }
        final += len(frontier)
        failing += len(moved.get(TaskState.UPSTREAM_FAILED, []))
        latches = _release(run_id, compiled, frontier)
    publish_on_commit(ready)
    run_state = states.count_finished_tasks(run_id, final, failing) or run_state
    if run_state:
        transaction.on_commit(lambda: _admit_next_runs(compiled))


def _release(run_id: str, compiled: CompiledDag, frontier: dict[str, str]) -> list[Latch]:
    """Count the frontier down on its downstream instances; all_success ones that are
    ready are queued by the same statement."""
    deltas: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for task_id, state in frontier.items():
        slot = 0 if state == TaskState.SUCCESS else 1 if state in TaskState.FAILING else 2
        for downstream in compiled.downstream[task_id]:
            deltas[downstream][slot] += 1
    groups: dict[tuple[int, int, int], list[str]] = defaultdict(list)
    for downstream, delta in deltas.items():
        groups[(delta[0], delta[1], delta[2])].append(downstream)
    latches: list[Latch] = []
    for (succeeded, failed, skipped), task_ids in groups.items():
        latches += states.release_downstream(
            run_id,
            task_ids,
            succeeded=succeeded,
            failed=failed,
            skipped=skipped,
            queue_ids=compiled.all_success_tasks,
        )
    return latches


def _decide(compiled: CompiledDag, latches: list[Latch]) -> dict[str, list[tuple[int, str]]]:
    """Which released instances moved, by target state: those the release queued, and
    those still pending whose trigger rule decides now."""
    moved: dict[str, list[tuple[int, str]]] = {TaskState.QUEUED: []}
    decided: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for latch in latches:
        member = (latch.instance_id, latch.task_id)
        queued = latch.state == TaskState.QUEUED and latch.pending == 0
        if queued and latch.task_id in compiled.all_success_tasks:
            moved[TaskState.QUEUED].append(member)  # by the release itself
        if latch.state != TaskState.PENDING:
            continue
        rule = compiled.tasks[latch.task_id].trigger_rule
        decision = decide(rule, latch.pending, latch.succeeded, latch.failed, latch.skipped)
        if decision != Decision.WAIT:
            decided[decision.value].append(member)
    for target, members in decided.items():
        ids = set(states.leave_pending([pk for pk, _ in members], target))
        moved.setdefault(target, []).extend(member for member in members if member[0] in ids)
    return moved


def _admit_next_runs(compiled: CompiledDag) -> None:
    from dags.models import Dag

    dag_pk = Dag.objects.values_list("pk", flat=True).get(dag_id=compiled.dag_id)
    admit_queued_runs(dag_pk)
