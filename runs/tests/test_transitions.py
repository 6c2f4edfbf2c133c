"""Every statement of runs/states against every state of the tables (CONTRACT section 2).

The tables in runs/states/machine.py are the source of truth. These tests read them, so
they grow with them: a (from, to) pair added to a table needs a statement that makes it,
and a statement declared without a driver here fails until one is written.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from runs import states
from runs.models import DagRun, RunSlots, TaskInstance
from runs.services import trigger_run
from runs.states import (
    RUN_TRANSITIONS,
    TASK_TRANSITIONS,
    TRANSITIONS,
    RunState,
    TaskState,
    TransitionRefused,
)
from runs.states.machine import transition
from testkit.engine import submit

pytestmark = pytest.mark.django_db(transaction=True)

YAML = """
id: transitions
tasks:
  - {id: a, command: "true", queue: nobody-listens}
  - {id: b, command: "true", depends_on: [a], queue: nobody-listens}
"""
LONG_AGO = timedelta(hours=1)


@pytest.fixture
def dag():
    return submit(YAML)


def test_every_pair_of_the_tables_is_made_by_a_declared_statement():
    made = {(t.table, pair) for t in TRANSITIONS.values() for pair in t.pairs()}
    for table, moves in (("task", TASK_TRANSITIONS), ("run", RUN_TRANSITIONS)):
        for source, targets in moves.items():
            for target in targets:
                assert (table, (source, target)) in made, (
                    f"no statement moves {table} {source} -> {target}"
                )


def test_a_statement_the_table_does_not_allow_cannot_be_declared():
    with pytest.raises(TransitionRefused, match="cannot go from success to running"):
        transition("not-allowed", "task", [TaskState.SUCCESS], [TaskState.RUNNING])
    assert "not-allowed" not in TRANSITIONS


# --- drivers: run one statement on a row, for one target ------------------------------------


def _claim_of(ti: TaskInstance) -> states.Claim:
    return states.Claim(
        ti.id, str(ti.run_id), ti.task_id, ti.try_number, 3, 0, {}, "w@host", timezone.now()
    )


def _found(ti: TaskInstance) -> states.Found:
    return states.Found(ti.id, ti.task_id, ti.state, ti.try_number, ti.pool, ti.waiting_slot)


def _countdown(run: DagRun, target: str) -> None:
    states.count_finished_tasks(run.id, 1, int(target == RunState.FAILED))


TASK_DRIVERS: dict[str, Callable[[TaskInstance, str], object]] = {
    "claim": lambda ti, target: states.claim(ti.id, ti.try_number, "w@host", 60),
    "queue_retry": lambda ti, target: states.queue_retry(ti.id, ti.try_number),
    "hand_back": lambda ti, target: states.hand_back(_claim_of(ti)),
    "release": lambda ti, target: states.release_downstream(
        ti.run_id,
        [ti.task_id],
        succeeded=1,
        queue_ids=[ti.task_id] if target == TaskState.QUEUED else [],
    ),
    "finish": lambda ti, target: states.finish_task(
        _claim_of(ti), target, downstream=[], queue_ids=[]
    ),
    "leave_pending": lambda ti, target: states.leave_pending([ti.id], target),
    "clear": lambda ti, target: states.clear_instance(
        ti.id,
        ti.state,
        ti.try_number,
        max_tries=5,
        latch={
            "pending_upstream": 1,
            "upstream_succeeded": 0,
            "upstream_failed": 0,
            "upstream_skipped": 0,
        },
    ),
    "cancel": lambda ti, target: states.cancel_instances(ti.run_id),
    "stop_attempt": lambda ti, target: states.stop_attempt(ti.run_id, _found(ti)),
    "mark": lambda ti, target: states.mark_instance(
        ti.id, ti.state, ti.try_number, target, "marked by hand"
    ),
    "republish": lambda ti, target: states.requeue_stale_queued([ti.id], timezone.now()),
    "requeue_overdue_retry": lambda ti, target: states.requeue_overdue_retries(
        [ti.id], timezone.now()
    ),
    "time_out_running": lambda ti, target: states.time_out_running(ti.run_id, timezone.now()),
    "time_out_waiting": lambda ti, target: states.time_out_waiting(ti.run_id, timezone.now()),
    "lease": lambda ti, target: states.renew_lease(
        ti.id, ti.try_number, timezone.now() + LONG_AGO, None
    ),
}
RUN_DRIVERS: dict[str, Callable[[DagRun, str], object]] = {
    "start_run": lambda run, target: states.start_run(run.id),
    "countdown": _countdown,
    "finish_drained_run": lambda run, target: states.finish_drained_run(run.id),
    "reopen_run": lambda run, target: states.reopen_run(run.id, 1, 0),
    "cancel_run": lambda run, target: states.cancel_run(run.id),
    "time_out_run": lambda run, target: states.time_out_run(run.id, timezone.now()),
}


def _task_row(dag, source: str) -> TaskInstance:
    """Instance `b` of a new running run, put in `source` with everything a statement's
    other guards look at already due: try 1, backoff and lease long past."""
    run = trigger_run(dag)
    DagRun.objects.filter(id=run.id).update(state=RunState.RUNNING, tasks_unfinished=2)
    past = timezone.now() - LONG_AGO
    TaskInstance.objects.filter(run=run, task_id="b").update(
        state=source,
        try_number=1,
        pending_upstream=1,
        next_retry_at=past,
        lease_expires_at=past,
        queued_at=past,
    )
    return TaskInstance.objects.get(run=run, task_id="b")


def _run_row(dag, source: str, target: str) -> DagRun:
    """A new run put in `source`, its countdown where `target` needs it: one instance
    left to count for success or failed, two to stay running, none for a drained run."""
    run = trigger_run(dag)
    unfinished = 2 if target == RunState.RUNNING else 1
    DagRun.objects.filter(id=run.id).update(
        state=source,
        tasks_unfinished=unfinished,
        tasks_failed=0,
        deadline_at=timezone.now() - LONG_AGO,
    )
    return DagRun.objects.get(id=run.id)


def _drive(driver: Callable, row, target: str) -> None:
    # Refused before any SQL ran: the row stays as it is, which the caller checks.
    with contextlib.suppress(TransitionRefused):
        driver(row, target)


@pytest.mark.parametrize(
    "name", sorted(name for name, t in TRANSITIONS.items() if t.table == "task")
)
def test_each_task_statement_moves_its_sources_and_leaves_every_other_state(dag, name):
    transition = TRANSITIONS[name]
    assert name in TASK_DRIVERS, f"write a driver for the task statement {name!r}"
    for source in TaskState.values:
        for target in transition.targets:
            row = _task_row(dag, source)
            _drive(TASK_DRIVERS[name], row, target)
            after = TaskInstance.objects.values_list("state", flat=True).get(id=row.id)
            expected = target if source in transition.sources else source
            assert after == expected, f"{name}: {source} -> {target} left it {after}"


@pytest.mark.parametrize(
    "name", sorted(name for name, t in TRANSITIONS.items() if t.table == "run")
)
def test_each_run_statement_moves_its_sources_and_leaves_every_other_state(dag, name):
    transition = TRANSITIONS[name]
    assert name in RUN_DRIVERS, f"write a driver for the run statement {name!r}"
    for source in RunState.values:
        for target in transition.targets:
            row = _run_row(dag, source, target)
            if name == "finish_drained_run":
                DagRun.objects.filter(id=row.id).update(
                    tasks_unfinished=0, tasks_failed=int(target == RunState.FAILED)
                )
            _drive(RUN_DRIVERS[name], row, target)
            after = DagRun.objects.values_list("state", flat=True).get(id=row.id)
            expected = target if source in transition.sources else source
            assert after == expected, f"{name}: {source} -> {target} left it {after}"


def test_repair_statements_are_guarded_on_the_state_and_try_their_caller_saw(dag):
    row = _task_row(dag, TaskState.SKIPPED)
    latch = {"pending_upstream": 1, "upstream_succeeded": 0, "upstream_failed": 0}
    latch["upstream_skipped"] = 0
    assert not states.clear_instance(row.id, TaskState.FAILED, 1, max_tries=5, latch=latch)
    assert not states.clear_instance(row.id, TaskState.SKIPPED, 2, max_tries=5, latch=latch)
    assert not states.mark_instance(row.id, TaskState.SKIPPED, 0, TaskState.SUCCESS, "")
    running = _task_row(dag, TaskState.RUNNING)
    assert not states.stop_attempt(
        running.run_id, _found(running).__class__(running.id, "b", TaskState.RUNNING, 2, "", False)
    )
    assert TaskInstance.objects.get(id=row.id).state == TaskState.SKIPPED
    assert TaskInstance.objects.get(id=running.id).state == TaskState.RUNNING


def test_no_attempt_is_claimed_while_a_stopped_one_may_still_run(dag):
    row = _task_row(dag, TaskState.RUNNING)
    lease = timezone.now() + LONG_AGO
    TaskInstance.objects.filter(id=row.id).update(lease_expires_at=lease)
    assert states.cancel_instances(row.run_id).instances == 2
    stopped = TaskInstance.objects.get(id=row.id)
    assert stopped.stopped_lease == lease
    TaskInstance.objects.filter(id=row.id).update(state=TaskState.QUEUED)  # as a rerun would

    assert states.claim(row.id, 1, "w@host", 60) is None
    assert states.claim(row.id, 1, "w@host", 60, stops_over_before=lease + LONG_AGO)

    TaskInstance.objects.filter(id=row.id).update(
        state=TaskState.QUEUED, try_number=1, stopped_lease=lease
    )
    assert [r.instance_id for r in states.end_stop(row.id, 1)] == [row.id]
    assert states.end_stop(row.id, 1) == []  # once
    assert states.claim(row.id, 1, "w@host", 60) is not None


def test_a_decision_made_on_a_latch_that_changed_since_moves_nothing(dag):
    """A trigger rule decided from a latch a repair has set afresh since: the repair
    decided that task itself, so the stale decision must not land."""
    row = _task_row(dag, TaskState.PENDING)
    stale = states.Latch(row.id, "b", TaskState.PENDING, 0, 0, 1, 0)
    assert states.leave_pending([row.id], TaskState.UPSTREAM_FAILED, decided_on=[stale]) == []
    fresh = states.Latch(row.id, "b", TaskState.PENDING, 1, 0, 0, 0)
    assert states.leave_pending([row.id], TaskState.QUEUED, decided_on=[fresh]) == [row.id]


@pytest.mark.skipif(
    os.environ.get("FLOWFORGE_TEST_BACKEND") == "sqlite", reason="this is the SQLite run"
)
def test_the_same_statements_hold_on_sqlite(tmp_path):
    """The embedded default's database: the finish runs as steps there, and lists and
    JSON are spelled its way. The tests above, in a session of their own on SQLite."""
    if connection.vendor != "postgresql":
        pytest.skip("already on SQLite")
    env = {**os.environ, "FLOWFORGE_TEST_BACKEND": "sqlite", "FLOWFORGE_VAR_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout


@pytest.mark.parametrize("limit", ["max_active_tasks", "pool"])
def test_a_full_slot_refuses_the_claim_and_the_finish_wakes_the_waiter(limit):
    """On both backends (this file also runs on SQLite): the claim that would exceed a
    slot changes nothing, and the finish that frees it takes the waiter off the wait."""
    from dags.models import Pool

    Pool.objects.create(name="one", slots=1)
    keys = "max_active_tasks: 1\n" if limit == "max_active_tasks" else ""
    pool = "" if limit == "max_active_tasks" else ", pool: one"
    run = trigger_run(
        submit(
            f"id: slotted\n{keys}tasks:\n"
            f"  - {{id: a, command: 'true', queue: nobody-listens{pool}}}\n"
            f"  - {{id: b, command: 'true', queue: nobody-listens{pool}}}\n"
        )
    )
    a, b = (TaskInstance.objects.get(run=run, task_id=t) for t in "ab")
    claim = states.claim(a.id, 0, "w@host", 60)
    with pytest.raises(states.NoSlot):
        states.claim(b.id, 0, "w@host", 60)
    assert TaskInstance.objects.get(id=b.id).state == TaskState.QUEUED  # nothing changed
    assert states.wait_for_slot(b.id, 0)
    assert states.wait_for_slot(b.id, 0)  # marked once, counted once
    slot = RunSlots.objects.get(run=run) if limit == "max_active_tasks" else Pool.objects.get()
    assert slot.__class__.objects.get(pk=slot.pk).waiting == 1

    finish = states.finish_task(claim, TaskState.SUCCESS, downstream=[], queue_ids=())

    assert [(w.instance_id, w.try_number) for w in finish.woken] == [(b.id, 0)]
    assert not TaskInstance.objects.get(id=b.id).waiting_slot
    assert slot.__class__.objects.get(pk=slot.pk).waiting == 0
    second = states.claim(b.id, 0, "w@host", 60)
    assert second is not None
    # Nobody waits now: the finish looks for no one to wake.
    assert states.finish_task(second, TaskState.SUCCESS, downstream=[], queue_ids=()).woken == []
