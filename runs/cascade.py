"""What a task reaching a final state sets off downstream: its latches counted down,
the tasks they free queued (or decided by their trigger rules), and the run counted
down to its end. The completion handler (workflows/dispatch.py), the reconciler and the
repairs (runs/repair.py) all carry a frontier on through here.
"""

from __future__ import annotations

from collections import defaultdict

from django.db import transaction

from dags.compiled import CompiledDag
from dags.models import Dag

from . import states, telemetry
from .messages import TaskMessage, publish_on_commit
from .services import admit_queued_runs
from .states import Latch, TaskState
from .trigger_rules import Decision, decide


def propagate(run_id: str, compiled: CompiledDag, finished: dict[str, str]) -> None:
    """Release the downstream tasks of instances that became final outside finish_task
    (the reconciler's repairs), and count them on their run.

    `finished` maps task ids to the final state they reached in this transaction.
    """
    failing = sum(state in TaskState.FAILING for state in finished.values())
    latches = _release(run_id, compiled, finished)
    carry_on(run_id, compiled, latches, final=len(finished), failing=failing)


def carry_on(
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
            TaskMessage(latch.instance_id, latch.try_number, compiled.tasks[latch.task_id].queue)
            for latch in moved.get(TaskState.QUEUED, [])
        ]
        frontier = {
            latch.task_id: state
            for state in (TaskState.UPSTREAM_FAILED, TaskState.SKIPPED)
            for latch in moved.get(state, [])
        }
        final += len(frontier)
        failing += len(moved.get(TaskState.UPSTREAM_FAILED, []))
        latches = _release(run_id, compiled, frontier)
    publish_on_commit(ready)
    telemetry.tasks_enqueued(compiled.dag_id, len(ready))
    run_state = states.count_finished_tasks(run_id, final, failing) or run_state
    if run_state:
        telemetry.run_finished(compiled.dag_id, run_state)
        transaction.on_commit(lambda: admit_next_runs(compiled))


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


def _decide(compiled: CompiledDag, latches: list[Latch]) -> dict[str, list[Latch]]:
    """Which released instances moved, by target state: those the release queued, and
    those still pending whose trigger rule decides now."""
    moved: dict[str, list[Latch]] = {TaskState.QUEUED: []}
    decided: dict[str, list[Latch]] = defaultdict(list)
    for latch in latches:
        queued = latch.state == TaskState.QUEUED and latch.pending == 0
        if queued and latch.task_id in compiled.all_success_tasks:
            moved[TaskState.QUEUED].append(latch)  # by the release itself
        if latch.state != TaskState.PENDING:
            continue
        rule = compiled.tasks[latch.task_id].trigger_rule
        decision = decide(rule, latch.pending, latch.succeeded, latch.failed, latch.skipped)
        if decision != Decision.WAIT:
            decided[decision.value].append(latch)
    for target, members in decided.items():
        ids = set(
            states.leave_pending(
                [latch.instance_id for latch in members], target, decided_on=members
            )
        )
        moved.setdefault(target, []).extend(latch for latch in members if latch.instance_id in ids)
    return moved


def admit_next_runs(compiled: CompiledDag) -> None:
    """Start the DAG's queued runs that now have room (a run of it just ended)."""
    dag_pk = Dag.objects.values_list("pk", flat=True).get(dag_id=compiled.dag_id)
    admit_queued_runs(dag_pk)
