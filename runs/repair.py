"""Repairing a run by hand (CONTRACT section 9): clear a task and its downstream, mark a
task success or failed, rerun a finished run's failures, retry a dead letter.

Every repair is one transaction, in three parts:

1. Lock every instance of the run (runs/states/repairs.py) and check the task against
   what the request saw of it (`Seen`): a task that moved on since is a RepairConflict
   (409) naming its state and try number now, and nothing changes.
2. Plan: which unfinished attempts to stop, which task to mark, which tasks go back to
   pending. Only the plan differs between the repairs.
3. Carry it out through runs/states: stop, mark, shift the latches of the downstream
   tasks left alone, reset the others to pending with their latches counted afresh, count
   the run back up (a finished run runs again, with a fresh run timeout), and let the
   trigger rules decide what can run now (runs/cascade.py). The repair is kept on the
   run's audit trail (runs.models.Repair).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import OperationalError, transaction

from dags.compiled import CompiledDag, compiled_version

from . import states, telemetry
from .cascade import admit_next_runs, carry_on
from .models import DagRun, DeadLetter, Repair, TaskInstance
from .prepared import pgcode
from .services import republish
from .states import Found, LatchCounts, RunState, TaskState

# Unfinished states whose attempt a repair stops before it clears or marks the task.
STOPPABLE = frozenset({TaskState.QUEUED, TaskState.RUNNING, TaskState.UP_FOR_RETRY})
# Downstream tasks that a mark decides again: those that have not run (CONTRACT 9).
REDECIDED = frozenset({TaskState.PENDING, TaskState.UPSTREAM_FAILED, TaskState.SKIPPED})
# What a rerun runs again.
RERUN = frozenset({TaskState.FAILED, TaskState.UPSTREAM_FAILED, TaskState.CANCELLED})
MARKABLE = (TaskState.SUCCESS, TaskState.FAILED)
DEADLOCK = "40P01"  # PostgreSQL's SQLSTATE for a deadlock it broke by failing one side


class RepairRefused(ValueError):
    """The run or task is in a state that does not allow this repair (409); the message
    says why and what to do instead."""


class RepairConflict(RepairRefused):
    """The task moved on since the request saw it: another operator or its worker got
    there first. `state` and `try_number` are the task's now."""

    def __init__(self, task_id: str, state: str, try_number: int, message: str) -> None:
        super().__init__(message)
        self.task_id, self.state, self.try_number = task_id, state, try_number


@dataclass(frozen=True)
class Seen:
    """What the request saw of the task it repairs; None leaves that part unchecked."""

    state: str | None = None
    try_number: int | None = None

    @classmethod
    def of(cls, instance: TaskInstance, try_number: int | None = None) -> Seen:
        """The instance as the request read it; `try_number` (the caller's own view,
        sent with the request) takes the place of the one read."""
        return cls(instance.state, instance.try_number if try_number is None else try_number)


@dataclass
class Plan:
    """What a repair does to a run's task instances: stop the unfinished attempts of
    `stop`, mark `mark[0]` as `mark[1]`, reset `reset` to pending."""

    stop: list[str] = field(default_factory=list)
    mark: tuple[str, str] | None = None
    reset: list[str] = field(default_factory=list)

    def changed(self) -> list[str]:
        marked = [self.mark[0]] if self.mark else []
        return list(dict.fromkeys([*self.stop, *marked, *self.reset]))


Planner = Callable[[DagRun, CompiledDag, dict[str, Found]], Plan | None]


def clear_task(
    run_id: object,
    task_id: str,
    *,
    downstream: bool = True,
    by: str = "",
    seen: Seen | None = None,
    action: str = Repair.Action.CLEAR,
) -> DagRun:
    """Run the task (and, with `downstream`, every task downstream of it) again with new
    attempts, whatever state it is in: unfinished attempts are stopped first, try numbers
    go on counting, each cleared task gets 1 + retries tries again (CONTRACT section 9).

    A cancelled run is revived whole: its cancelled tasks run again too.

    Raises RepairConflict when the task is no longer as `seen`, RepairRefused when the run
    is still queued, TaskInstance.DoesNotExist for an unknown task.
    """

    def plan(run: DagRun, compiled: CompiledDag, found: dict[str, Found]) -> Plan:
        _check_seen(found, task_id, seen)
        cleared = _with_descendants(compiled, task_id) if downstream else [task_id]
        return Plan(stop=[t for t in cleared if found[t].state in STOPPABLE], reset=cleared)

    details = {"downstream": downstream}
    return _repair(run_id, plan, action, task_id=task_id, details=details, by=by)


def retry_task(
    run_id: object,
    task_id: str,
    *,
    by: str = "",
    action: str = Repair.Action.RETRY,
    check: Callable[[], None] | None = None,
) -> DagRun:
    """Clear a failed task and its downstream (POST .../retry, the dead-letter retry):
    RepairRefused unless the task is failed. `check` is called first, with the run's
    instances locked, and may refuse by raising RepairRefused."""

    def plan(run: DagRun, compiled: CompiledDag, found: dict[str, Found]) -> Plan:
        if check is not None:
            check()
        state = found[task_id].state
        if state != TaskState.FAILED:
            raise RepairConflict(
                task_id,
                state,
                found[task_id].try_number,
                f"task '{task_id}' is {state}; only failed tasks can be retried"
                " (clear runs any task again)",
            )
        cleared = _with_descendants(compiled, task_id)
        return Plan(stop=[t for t in cleared if found[t].state in STOPPABLE], reset=cleared)

    return _repair(run_id, plan, action, task_id=task_id, details={"downstream": True}, by=by)


def retry_dead_letter(entry: DeadLetter, *, by: str = "") -> DagRun:
    """Run a dead-lettered task again with a fresh set of tries (its backoff starts
    afresh: workflows/dispatch.py counts the tries of the current set), resuming its run;
    the entry records when and by whom. RepairRefused when it was retried already."""

    def not_yet_retried(fresh: DeadLetter = entry) -> None:
        if fresh.retried_at is not None:
            who = f" by {fresh.retried_by}" if fresh.retried_by else ""
            raise RepairRefused(
                f"dead letter {fresh.id} was already retried at {fresh.retried_at}{who}"
            )

    not_yet_retried()  # the common refusal, before any lock is taken
    return retry_task(
        entry.run_id,
        entry.task_id,
        by=by,
        action=Repair.Action.DLQ_RETRY,
        # Again under the locks: two retries pressed at once stamp the entry once.
        check=lambda: not_yet_retried(DeadLetter.objects.select_for_update().get(pk=entry.pk)),
    )


def mark_task(
    run_id: object, task_id: str, state: str, *, by: str = "", seen: Seen | None = None
) -> DagRun:
    """Set the task's outcome by hand to `state` (success or failed), stopping its attempt
    if one is unfinished. Its downstream tasks that have not run (pending, upstream_failed,
    skipped) are decided again by their trigger rules as if it had ended so; those that
    ran keep their outcome (CONTRACT section 9). Marking a task as the state it is in
    changes nothing.

    Raises ValueError for another `state`, RepairConflict when the task is no longer as
    `seen`, RepairRefused when the run is still queued.
    """
    if state not in MARKABLE:
        raise ValueError(f"a task can be marked success or failed, not {state!r}")

    def plan(run: DagRun, compiled: CompiledDag, found: dict[str, Found]) -> Plan | None:
        _check_seen(found, task_id, seen)
        if found[task_id].state == state:
            return None
        stop = [task_id] if found[task_id].state in STOPPABLE else []
        return Plan(stop=stop, mark=(task_id, state), reset=_redecided(compiled, found, task_id))

    def details(found: dict[str, Found]) -> dict:
        return {"state": state, "was": found[task_id].state}

    return _repair(run_id, plan, Repair.Action.MARK, task_id=task_id, details=details, by=by)


def rerun(run_id: object, *, by: str = "") -> DagRun:
    """Run a finished run's failed, upstream_failed and cancelled tasks again; its
    successful tasks keep their outcome and outputs (CONTRACT section 9). RepairRefused
    when the run has not finished, or has nothing to run again."""

    def plan(run: DagRun, compiled: CompiledDag, found: dict[str, Found]) -> Plan:
        if run.state not in RunState.FINAL:
            raise RepairRefused(
                f"run {run.id} is still {run.state}; rerun a finished run"
                " (cancel it first, or clear one of its tasks)"
            )
        again = [t for t in compiled.tasks if found[t].state in RERUN]
        if not again:
            raise RepairRefused(
                f"run {run.id} has no failed, upstream_failed or cancelled task to run again;"
                " clear a task to run it again"
            )
        return Plan(reset=again)

    return _repair(run_id, plan, Repair.Action.RERUN, details={}, by=by)


# --- carrying a plan out ---------------------------------------------------------------


def _repair(
    run_id: object,
    planner: Planner,
    action: str,
    *,
    task_id: str = "",
    details: dict | Callable[[dict[str, Found]], dict],
    by: str,
) -> DagRun:
    """Plan and carry out a repair in one transaction; DagRun.DoesNotExist for an
    unknown run. A deadlock with a finish that took the same rows in another order (the
    database fails one side) is tried again; the finish's worker retries its side too."""
    for attempt in itertools.count(1):
        try:
            with transaction.atomic():
                _carry_out(run_id, planner, action, task_id, details, by)
            break
        except OperationalError as exc:
            if attempt >= 3 or pgcode(exc) != DEADLOCK:
                raise
    return DagRun.objects.select_related("dag", "dag_version").get(pk=run_id)


def _carry_out(
    run_id: object,
    planner: Planner,
    action: str,
    task_id: str,
    details: dict | Callable[[dict[str, Found]], dict],
    by: str,
) -> None:
    found = states.lock_run_instances(run_id)
    # Read after the instances are locked: nothing can end the run meanwhile.
    run = DagRun.objects.get(pk=run_id)
    if task_id and task_id not in found:
        raise TaskInstance.DoesNotExist(f"run {run.id} has no task '{task_id}'")
    if run.state == RunState.QUEUED:
        raise RepairRefused(
            f"run {run.id} is queued (waiting under max_active_runs) and none of its tasks"
            " has started; there is nothing to repair yet"
        )
    compiled = compiled_version(run.dag_version_id)
    plan = planner(run, compiled, found)
    if plan is None:
        return
    if run.state == RunState.CANCELLED:
        _revive_whole(found, plan)
    now_state = {t: f.state for t, f in found.items()}
    freed = _stop(run.id, found, plan.stop, now_state)
    if plan.mark:
        _mark(found, *plan.mark, now_state, by)
    latches = _reset(compiled, found, plan.reset, now_state)
    _relatch(run.id, compiled, plan, now_state)
    _count_back_up(run, compiled, found, plan, latches)
    _wake(run.id, freed)
    cleared_failed = [
        found[t].instance_id for t in plan.reset if found[t].state == TaskState.FAILED
    ]
    states.mark_dead_letters_retried(cleared_failed, by)
    states.record_repair(
        run.id,
        action,
        task_id=task_id,
        details=details(found) if callable(details) else details,
        tasks=plan.changed(),
        by=by,
    )


def _revive_whole(found: dict[str, Found], plan: Plan) -> None:
    """A cancelled run is revived whole: the tasks its cancel stopped run again with the
    repaired ones. Left cancelled, they would end the revived run by a countdown that
    counts them as neither success nor failure."""
    marked = {plan.mark[0]} if plan.mark else set()
    plan.reset += [
        task_id
        for task_id, instance in found.items()
        if instance.state == TaskState.CANCELLED
        and task_id not in plan.reset
        and task_id not in marked
    ]


def _check_seen(found: dict[str, Found], task_id: str, seen: Seen | None) -> None:
    now = found[task_id]
    if seen is None:
        return
    if (seen.state is None or seen.state == now.state) and (
        seen.try_number is None or seen.try_number == now.try_number
    ):
        return
    saw = " ".join(
        part
        for part in (seen.state, f"(try {seen.try_number})" if seen.try_number is not None else "")
        if part
    )
    raise _conflict(task_id, now.state, now.try_number, saw)


def _conflict(task_id: str, state: str, try_number: int, saw: str = "") -> RepairConflict:
    since = f"; the request saw it {saw}" if saw else ""
    return RepairConflict(
        task_id,
        state,
        try_number,
        f"task '{task_id}' is now {state} (try {try_number}){since}. Someone or its worker"
        " got there first and nothing was changed: look at it again, and repeat if it is"
        " still wanted",
    )


def _lost(found: Found) -> RepairConflict:
    """The conflict for a guarded statement that matched no row (a backend without row
    locks, where a worker or another repair wrote first): what the row is now."""
    state, tries = TaskInstance.objects.values_list("state", "try_number").get(id=found.instance_id)
    return _conflict(found.task_id, state, tries, f"{found.state} (try {found.try_number})")


def _stop(
    run_id: object, found: dict[str, Found], task_ids: list[str], now_state: dict[str, str]
) -> Counter[str]:
    """Stop the unfinished attempts; returns the slots they gave back ("" for the run's)."""
    freed: Counter[str] = Counter()
    for task_id in task_ids:
        if not states.stop_attempt(run_id, found[task_id]):
            raise _lost(found[task_id])
        now_state[task_id] = TaskState.CANCELLED
        if found[task_id].state == TaskState.RUNNING:
            freed[""] += 1
            if found[task_id].pool:
                freed[found[task_id].pool] += 1
    return freed


def _mark(
    found: dict[str, Found], task_id: str, target: str, now_state: dict[str, str], by: str
) -> None:
    note = f"marked {target} by {by or 'an operator'}"
    instance = found[task_id]
    if not states.mark_instance(
        instance.instance_id, now_state[task_id], instance.try_number, target, note
    ):
        raise _lost(instance)
    now_state[task_id] = target


def _reset(
    compiled: CompiledDag, found: dict[str, Found], task_ids: list[str], now_state: dict[str, str]
) -> list[states.Latch]:
    """The tasks back to pending with a fresh set of tries and their latches counted
    from their upstream tasks as they are now (those reset too count as pending)."""
    sources = {task_id: now_state[task_id] for task_id in task_ids}
    now_state.update(dict.fromkeys(task_ids, TaskState.PENDING))
    latches = []
    for task_id in task_ids:
        latch = _latch(compiled, task_id, now_state)
        instance = found[task_id]
        if not states.clear_instance(
            instance.instance_id,
            sources[task_id],
            instance.try_number,
            max_tries=instance.try_number + 1 + compiled.tasks[task_id].retries,
            latch=latch.columns(),
        ):
            raise _lost(instance)
        latches.append(
            states.Latch(
                instance.instance_id,
                task_id,
                TaskState.PENDING,
                latch.pending,
                latch.succeeded,
                latch.failed,
                latch.skipped,
                instance.try_number,
            )
        )
    return latches


def _relatch(run_id: object, compiled: CompiledDag, plan: Plan, now_state: dict[str, str]) -> None:
    """Set the latches of the tasks right downstream of those the repair changed, which
    it does not reset, from their upstream tasks as they are now."""
    changed = [*plan.reset, *([plan.mark[0]] if plan.mark else [])]
    children = {child for task_id in changed for child in compiled.downstream[task_id]}
    states.set_latches(
        run_id,
        {child: _latch(compiled, child, now_state) for child in children - set(plan.reset)},
    )


def _latch(compiled: CompiledDag, task_id: str, now_state: dict[str, str]) -> LatchCounts:
    return LatchCounts.of(now_state[upstream] for upstream in compiled.tasks[task_id].depends_on)


def _count_back_up(
    run: DagRun,
    compiled: CompiledDag,
    found: dict[str, Found],
    plan: Plan,
    latches: list[states.Latch],
) -> None:
    """The run's countdown, repaired: the reset tasks that had ended count as unfinished
    again (the run runs again), a marked one counts as it is now; then the trigger rules
    decide the reset tasks, and a run left with nothing to run ends."""
    cleared = sum(found[t].final for t in plan.reset)
    cleared_failing = sum(found[t].state in TaskState.FAILING for t in plan.reset)
    final = failing = 0
    if plan.mark:
        task_id, target = plan.mark
        if found[task_id].final:
            cleared_failing += (found[task_id].state in TaskState.FAILING) - (
                target in TaskState.FAILING
            )
        else:
            final, failing = 1, int(target in TaskState.FAILING)
    states.reopen_run(run.id, cleared, cleared_failing, compiled.spec.run_timeout_secs)
    carry_on(str(run.id), compiled, latches, final=final, failing=failing)
    if ended := states.finish_drained_run(run.id):
        telemetry.run_finished(compiled.dag_id, ended)
        transaction.on_commit(lambda: admit_next_runs(compiled))


def _wake(run_id: object, freed: Counter[str]) -> None:
    """The slots the stopped attempts gave back wake the tasks waiting for them."""
    for pool, count in freed.items():
        if pool:
            republish(states.wake_waiting(pool=pool, count=count))
        else:
            republish(states.wake_waiting(run_id=run_id, count=count))


def _with_descendants(compiled: CompiledDag, task_id: str) -> list[str]:
    return _reachable(compiled, task_id, lambda _: True)


def _redecided(compiled: CompiledDag, found: dict[str, Found], task_id: str) -> list[str]:
    """The tasks downstream of `task_id` that have not run, reached through such tasks."""
    return _reachable(compiled, task_id, lambda t: found[t].state in REDECIDED)[1:]


def _reachable(compiled: CompiledDag, task_id: str, through: Callable[[str], bool]) -> list[str]:
    """`task_id` and the tasks downstream of it reached through tasks `through` accepts."""
    seen, stack = [task_id], [task_id]
    while stack:
        for child in compiled.downstream[stack.pop()]:
            if child not in seen and through(child):
                seen.append(child)
                stack.append(child)
    return seen
