"""The completion handler: record an attempt, move its instance on, release what it unblocks.

One transaction per completed attempt. Downstream instances are counted down with one
UPDATE ... RETURNING per group (the latch), so the cost of a completion depends on the
task's own fan-out, never on the size of its run.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone

from dags.compiled import CompiledDag
from runs import states
from runs.messages import TaskMessage, publish_dead_letter_on_commit, publish_on_commit
from runs.models import DeadLetter, TaskAttempt
from runs.services import admit_queued_runs
from runs.states import Claim, TaskState

from .executors import ExecutionResult
from .retry import retry_delay
from .signals import attempt_finished
from .trigger_rules import Decision, decide

log = logging.getLogger(__name__)


@receiver(attempt_finished)
def complete_attempt(
    sender, claim: Claim, result: ExecutionResult, compiled: CompiledDag, **kwargs
) -> str | None:
    """Returns the state the instance moved to, or None if it had been moved already."""
    task = compiled.tasks[claim.task_id]
    with transaction.atomic():
        target, retry_in = _next_state(claim, result, task)
        next_retry_at = timezone.now() + timezone.timedelta(seconds=retry_in) if retry_in else None
        moved = states.finish_and_record(
            claim.instance_id,
            claim.try_number,
            target,
            attempt={
                "worker": claim.worker,
                "started_at": claim.started_at,
                "stdout": result.stdout,
                "stderr": result.stderr,
            },
            next_retry_at=next_retry_at,
            exit_code=result.exit_code,
            error=result.error,
            output=result.output,
        )
        if not moved:
            _record_late_attempt(claim, result)
        log.info(
            "%s/%s try %s: %s %s",
            compiled.dag_id,
            claim.task_id,
            claim.try_number,
            target if moved else "ended after the instance was moved on; recorded only",
            result.error,
        )
        if not moved:
            return None
        if target == TaskState.UP_FOR_RETRY:
            publish_on_commit(
                [TaskMessage(claim.instance_id, claim.try_number, task["queue"], retry_in)]
            )
        else:
            if target == TaskState.FAILED:
                _dead_letter(claim, compiled, result)
            propagate(claim.run_id, compiled, {claim.task_id: target})
    return target


def _next_state(claim: Claim, result: ExecutionResult, task: dict) -> tuple[str, float]:
    if result.succeeded:
        return TaskState.SUCCESS, 0.0
    if claim.try_number < claim.max_tries:
        delay = retry_delay(
            claim.try_number,
            task["retry_delay_secs"],
            task["retry_max_delay_secs"],
            task["backoff"],
        )
        return TaskState.UP_FOR_RETRY, max(delay, 0.001)
    return TaskState.FAILED, 0.0


def _record_late_attempt(claim: Claim, result: ExecutionResult) -> None:
    """Someone moved the instance on before this attempt ended: a cancel (which records
    nothing), the reconciler (which recorded this try as "worker lost"), or this very
    completion retried after its commit's answer was lost. The first record stands."""
    TaskAttempt.objects.get_or_create(
        task_instance_id=claim.instance_id,
        try_number=claim.try_number,
        defaults={
            "state": TaskState.CANCELLED,
            "worker": claim.worker,
            "started_at": claim.started_at,
            "finished_at": timezone.now(),
            "exit_code": result.exit_code,
            "stdout": result.stdout,
            "stderr": result.stderr,
            "error": result.error,
        },
    )


def _dead_letter(claim: Claim, compiled: CompiledDag, result: ExecutionResult) -> None:
    entry = DeadLetter.objects.create(
        run_id=claim.run_id,
        task_instance_id=claim.instance_id,
        dag_id=compiled.dag_id,
        task_id=claim.task_id,
        attempts=claim.try_number,
        error=result.error,
    )
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
    """Release the downstream tasks of instances that just became final, transitively.

    `finished` maps task ids to the final state they reached in this transaction. Tasks
    that become upstream_failed or skipped are final too, so their downstream tasks are
    released in the next round.
    """
    final_count = len(finished)
    failing_count = sum(state in TaskState.FAILING for state in finished.values())
    ready: list[TaskMessage] = []
    frontier = finished
    while frontier:
        moved = _release(run_id, compiled, frontier)
        ready += [
            TaskMessage(pk, 0, compiled.tasks[task_id]["queue"])
            for pk, task_id in moved.get(TaskState.QUEUED, [])
        ]
        frontier = {
            task_id: state
            for state in (TaskState.UPSTREAM_FAILED, TaskState.SKIPPED)
            for _, task_id in moved.get(state, [])
        }
        final_count += len(frontier)
        failing_count += len(moved.get(TaskState.UPSTREAM_FAILED, []))
    publish_on_commit(ready)
    if states.count_finished_tasks(run_id, final_count, failing_count):
        transaction.on_commit(lambda: _admit_next_runs(compiled))


def _release(
    run_id: str, compiled: CompiledDag, frontier: dict[str, str]
) -> dict[str, list[tuple[int, str]]]:
    """Count the frontier down on its downstream instances; move those that can move."""
    deltas: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for task_id, state in frontier.items():
        slot = 0 if state == TaskState.SUCCESS else 1 if state in TaskState.FAILING else 2
        for downstream in compiled.downstream[task_id]:
            deltas[downstream][slot] += 1
    # all_success tasks (most) are queued by the release itself when ready: one statement.
    groups: dict[tuple[int, int, int, bool], list[str]] = defaultdict(list)
    for downstream, delta in deltas.items():
        all_success = compiled.tasks[downstream]["trigger_rule"] == "all_success"
        groups[(*delta, all_success)].append(downstream)
    decided: dict[str, list[tuple[int, str]]] = defaultdict(list)
    queued_now: list[tuple[int, str]] = []
    for (succeeded, failed, skipped, all_success), task_ids in groups.items():
        for latch in states.release_downstream(
            run_id,
            task_ids,
            succeeded=succeeded,
            failed=failed,
            skipped=skipped,
            queue_when_ready=all_success,
        ):
            if all_success and latch.state == TaskState.QUEUED and latch.pending == 0:
                queued_now.append((latch.instance_id, latch.task_id))
            if latch.state != TaskState.PENDING:
                continue
            rule = compiled.tasks[latch.task_id]["trigger_rule"]
            decision = decide(rule, latch.pending, latch.succeeded, latch.failed, latch.skipped)
            if decision != Decision.WAIT:
                decided[decision.value].append((latch.instance_id, latch.task_id))
    moved: dict[str, list[tuple[int, str]]] = {TaskState.QUEUED: queued_now}
    for target, members in decided.items():
        ids = set(states.leave_pending([pk for pk, _ in members], target))
        moved.setdefault(target, []).extend((pk, task_id) for pk, task_id in members if pk in ids)
    return moved


def _admit_next_runs(compiled: CompiledDag) -> None:
    from dags.models import Dag

    dag_pk = Dag.objects.values_list("pk", flat=True).get(dag_id=compiled.dag_id)
    admit_queued_runs(dag_pk)
