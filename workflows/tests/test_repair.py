"""Repairing runs on a real worker (CONTRACT section 9): clear, mark, rerun, and repairs
racing the worker's own completion or another operator."""

from __future__ import annotations

import random
import threading
import time

import pytest
from django.db import connection

from dags.models import Pool
from runs import repair, services
from runs.models import DagRun, Repair, TaskInstance
from runs.services import trigger_run
from runs.states import RunState, TaskState
from testkit.engine import process_group_alive, run_dag, submit, wait_for, wait_for_run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]

CHAIN = """
id: chain
tasks:
  - {id: a, command: "echo a"}
  - {id: b, command: "echo b", depends_on: [a]}
  - {id: c, command: "echo c", depends_on: [b]}
"""


def tries(run: DagRun) -> dict[str, tuple[str, int]]:
    return {ti.task_id: (ti.state, ti.try_number) for ti in run.task_instances.all()}


def wait_for_state(run_id, task_id: str, state: str, timeout: float = 30) -> TaskInstance:
    return wait_for(
        lambda: TaskInstance.objects.filter(run_id=run_id, task_id=task_id, state=state).first(),
        timeout=timeout,
        message=f"{task_id} to be {state}",
    )


def assert_settled(run: DagRun) -> None:
    """The run's counters agree with its instances, and nothing holds a slot."""
    run.refresh_from_db()
    states = [ti.state for ti in run.task_instances.all()]
    assert run.tasks_unfinished == sum(s not in TaskState.FINAL for s in states)
    assert run.tasks_failed == sum(s in TaskState.FAILING for s in states)
    assert all(ti.attempts.count() <= ti.try_number for ti in run.task_instances.all())


# --- clear ------------------------------------------------------------------------------


def test_clearing_a_middle_task_of_a_successful_chain_runs_only_it_and_its_downstream():
    run, _ = run_dag(CHAIN)
    assert run.state == RunState.SUCCESS
    finished_before = run.finished_at

    repair.clear_task(run.id, "b", by="alice")
    run = wait_for_run(run.id)

    assert run.state == RunState.SUCCESS and run.finished_at > finished_before
    assert tries(run) == {"a": ("success", 1), "b": ("success", 2), "c": ("success", 2)}
    b = run.task_instances.get(task_id="b")
    assert b.max_tries == 2  # try 2 of a fresh set of 1 + retries
    assert [a.state for a in b.attempts.order_by("try_number")] == ["success", "success"]
    (entry,) = Repair.objects.filter(run=run)
    assert (entry.action, entry.task_id, entry.by, entry.tasks) == (
        "clear",
        "b",
        "alice",
        ["b", "c"],
    )
    assert_settled(run)


def test_clearing_without_downstream_runs_that_task_alone():
    run, _ = run_dag(CHAIN)
    repair.clear_task(run.id, "b", downstream=False)
    run = wait_for_run(run.id)
    wait_for(lambda: tries(run)["b"] == ("success", 2), message="b to run again")
    assert tries(run) == {"a": ("success", 1), "b": ("success", 2), "c": ("success", 1)}
    assert_settled(run)


def test_clearing_a_running_task_stops_its_attempt_and_gives_its_pool_slot_back(tmp_path):
    Pool.objects.create(name="single", slots=1)
    marker = tmp_path / "started"
    run = trigger_run(
        submit(
            f"""
id: long-then-quick
tasks:
  - id: nap
    pool: single
    command: "if [ -f {marker} ]; then echo second; else touch {marker}; sleep 60; fi"
"""
        )
    )
    first = wait_for(
        lambda: TaskInstance.objects.filter(run=run, state="running").exclude(pgid=None).first(),
        message="nap to run with its process group recorded",
    )
    assert Pool.objects.get().running == 1

    repair.clear_task(run.id, "nap", seen=repair.Seen("running", 1))
    run = wait_for_run(run.id)

    nap = run.task_instances.get()
    assert (run.state, nap.state, nap.try_number) == ("success", "success", 2)
    wait_for(lambda: not process_group_alive(first.pgid), message="the stopped attempt to end")
    stopped, second = nap.attempts.order_by("try_number")
    assert (stopped.state, second.state) == ("cancelled", "success")
    # The message of try 2 waited for try 1 to end: the two never overlapped.
    assert second.started_at >= stopped.finished_at
    assert Pool.objects.get().running == 0
    assert_settled(run)


# --- mark -------------------------------------------------------------------------------


def test_marking_a_failed_task_success_lets_its_upstream_failed_downstream_run():
    run, before = run_dag(
        """
id: broken-middle
tasks:
  - {id: a, command: "echo a"}
  - {id: b, command: "exit 3", depends_on: [a]}
  - {id: c, command: "echo c", depends_on: [b]}
  - {id: d, command: "echo d", depends_on: [c]}
"""
    )
    assert (run.state, before["c"].state, before["d"].state) == (
        "failed",
        "upstream_failed",
        "upstream_failed",
    )

    repair.mark_task(run.id, "b", TaskState.SUCCESS, by="bob")
    run = wait_for_run(run.id)

    assert run.state == RunState.SUCCESS
    assert tries(run) == {
        "a": ("success", 1),
        "b": ("success", 1),
        "c": ("success", 1),
        "d": ("success", 1),
    }
    (entry,) = run.repairs.all()
    assert (entry.action, entry.details, entry.by) == (
        "mark",
        {"state": "success", "was": "failed"},
        "bob",
    )
    assert_settled(run)


def test_marking_a_leaf_changes_the_runs_outcome_at_once():
    run, _ = run_dag("id: one-leaf\ntasks:\n  - {id: only, command: 'exit 1'}\n")
    assert run.state == RunState.FAILED
    run = repair.mark_task(run.id, "only", TaskState.SUCCESS)
    assert run.state == RunState.SUCCESS
    run = repair.mark_task(run.id, "only", TaskState.FAILED, by="carol")
    assert run.state == RunState.FAILED
    assert run.task_instances.get().error == "marked failed by carol"
    assert_settled(run)


def test_marking_a_succeeded_task_failed_leaves_its_succeeded_downstream_alone():
    run, before = run_dag(CHAIN)
    run = repair.mark_task(run.id, "a", TaskState.FAILED)
    assert run.state == RunState.FAILED
    assert tries(run) == {"a": ("failed", 1), "b": ("success", 1), "c": ("success", 1)}
    after = run.task_instances.get(task_id="a")
    assert after.finished_at == before["a"].finished_at  # its duration is the time it ran
    assert_settled(run)


def test_marking_a_running_task_success_stops_it_and_its_downstream_runs():
    run = trigger_run(
        submit(
            """
id: stuck-then-marked
tasks:
  - {id: stuck, command: "sleep 60"}
  - {id: after, command: "echo after", depends_on: [stuck]}
"""
        )
    )
    stuck = wait_for_state(run.id, "stuck", "running")
    repair.mark_task(run.id, "stuck", TaskState.SUCCESS, seen=repair.Seen("running", 1))
    run = wait_for_run(run.id)
    assert run.state == RunState.SUCCESS
    assert tries(run) == {"stuck": ("success", 1), "after": ("success", 1)}
    wait_for(lambda: stuck.attempts.filter(state="cancelled").exists(), message="the record")
    assert_settled(run)


# --- rerun ------------------------------------------------------------------------------


def test_rerun_runs_only_what_failed_and_keeps_the_outputs_of_what_succeeded(tmp_path):
    ledger, flag = tmp_path / "ledger", tmp_path / "flag"
    run, _ = run_dag(
        f"""
id: rerun-me
params: {{ledger: {{type: string}}}}
tasks:
  - id: write
    type: python
    callable: workflows.tests.engine_callables:append_line
  - id: check
    command: "test -f {flag}"
    depends_on: [write]
  - id: after
    command: "echo after"
    depends_on: [check]
""",
        params={"ledger": str(ledger)},
    )
    assert run.state == RunState.FAILED
    flag.touch()

    repair.rerun(run.id, by="dave")
    run = wait_for_run(run.id)

    assert run.state == RunState.SUCCESS
    assert ledger.read_text().splitlines() == ["line"]  # write ran exactly once
    assert tries(run) == {"write": ("success", 1), "check": ("success", 2), "after": ("success", 1)}
    assert run.task_instances.get(task_id="write").output == 1
    (entry,) = run.repairs.all()
    assert (entry.action, entry.task_id, entry.tasks) == ("rerun", "", ["check", "after"])
    assert_settled(run)


def test_rerun_of_a_running_run_is_refused_and_changes_nothing():
    run = trigger_run(submit("id: napping\ntasks:\n  - {id: nap, command: 'sleep 60'}\n"))
    wait_for_state(run.id, "nap", "running")
    with pytest.raises(repair.RepairRefused, match="still running"):
        repair.rerun(run.id)
    assert not Repair.objects.exists()
    assert TaskInstance.objects.get(run=run).state == TaskState.RUNNING


def test_a_rerun_right_after_a_cancel_waits_for_the_stopped_attempt_to_end(tmp_path):
    marker = tmp_path / "started"
    run = trigger_run(
        submit(
            f"""
id: cancelled-mid-sleep
tasks:
  - id: nap
    command: "if [ -f {marker} ]; then echo second; else touch {marker}; sleep 60; fi"
"""
        )
    )
    first = wait_for(
        lambda: TaskInstance.objects.filter(run=run, state="running").exclude(pgid=None).first(),
        message="nap to run with its process group recorded",
    )
    services.cancel_run(run)
    repair.rerun(run.id)  # at once: the stopped attempt is still running

    run = wait_for_run(run.id)
    nap = run.task_instances.get()
    assert (run.state, nap.state, nap.try_number, nap.stopped_lease) == (
        "success",
        "success",
        2,
        None,
    )
    assert not process_group_alive(first.pgid)
    stopped, second = nap.attempts.order_by("try_number")
    assert (stopped.state, second.state) == ("cancelled", "success")
    assert second.started_at >= stopped.finished_at


def test_rerun_after_a_cancel_counts_the_cancelled_task_afresh_on_its_downstream(tmp_path):
    """c (one_success) ran once p1 succeeded; the cancel stopped p2 without releasing
    it on c's latch. The rerun sets c's latch from its upstream tasks as they are."""
    marker = tmp_path / "slept"
    run = trigger_run(
        submit(
            f"""
id: cancelled-then-rerun
tasks:
  - {{id: p1, command: "echo p1"}}
  - id: p2
    command: "if [ -f {marker} ]; then echo p2; else touch {marker}; sleep 60; fi"
  - {{id: c, command: "echo c", depends_on: [p1, p2], trigger_rule: one_success}}
"""
        )
    )
    wait_for_state(run.id, "c", "success")
    wait_for_state(run.id, "p2", "running")
    services.cancel_run(run)

    repair.rerun(run.id)
    run = wait_for_run(run.id)

    assert run.state == RunState.SUCCESS, tries(run)
    assert tries(run) == {"p1": ("success", 1), "p2": ("success", 2), "c": ("success", 1)}
    c = run.task_instances.get(task_id="c")
    assert (c.pending_upstream, c.upstream_succeeded) == (0, 2)
    assert_settled(run)


# --- races -------------------------------------------------------------------------------


RACE = """
id: race-{n}
tasks:
  - {{id: quick, command: "sleep 0.0{delay}"}}
  - {{id: after, command: "echo after", depends_on: [quick]}}
"""


def _running_or_done(run_id) -> TaskInstance:
    """The quick task as soon as its worker has claimed it (or already finished it)."""
    return wait_for(
        lambda: TaskInstance.objects.filter(
            run_id=run_id, task_id="quick", state__in=["running", "success"]
        ).first(),
        interval=0.001,
        message="quick to be claimed",
    )


@pytest.mark.parametrize("action", ["mark", "clear"])
def test_a_repair_racing_the_workers_completion_leaves_one_outcome(action):
    """The repair and the worker's finish both want the running attempt, which lasts 0
    to 30 ms; each round fires the repair within 40 ms of the attempt being claimed.
    Whoever wins, the run ends, its counters agree with its tasks, no task is left queued
    without a message, and a repair that lost is told the state and try it lost to."""
    outcomes, jitter = [], random.Random(16)
    for n in range(20):
        run = trigger_run(submit(RACE.format(n=n, delay=n % 4)))
        _running_or_done(run.id)
        # Not a wait for anything: it spreads the repair over the attempt's short life,
        # so that the worker's finish comes first in some rounds and second in others.
        time.sleep(jitter.uniform(0, 0.04))
        try:
            if action == "mark":
                repair.mark_task(run.id, "quick", "success", seen=repair.Seen("running", 1))
            else:
                repair.clear_task(run.id, "quick", seen=repair.Seen("running", 1))
            outcomes.append("repair")
        except repair.RepairConflict as lost:
            assert (lost.state, lost.try_number) == ("success", 1), str(lost)
            outcomes.append("worker")
        run = wait_for_run(run.id)
        assert run.state == RunState.SUCCESS, tries(run)
        won = outcomes[-1] == "repair"
        assert tries(run) == {
            "quick": ("success", 2 if action == "clear" and won else 1),
            "after": ("success", 1),
        }
        assert Repair.objects.filter(run=run).count() == int(won)
        assert_settled(run)
    print(
        f"{action}: {outcomes.count('repair')} won by the repair, {outcomes.count('worker')} by the worker"
    )
    assert "repair" in outcomes, outcomes  # the race was run, not only lost


def test_two_operators_clearing_at_once_make_one_clear_and_one_409():
    run, _ = run_dag(CHAIN)
    seen = repair.Seen("success", 1)
    results: list[str] = []
    barrier = threading.Barrier(2)

    def press() -> None:
        barrier.wait()
        try:
            repair.clear_task(run.id, "a", seen=seen)
            results.append("cleared")
        except repair.RepairConflict as exc:
            results.append(f"409 {exc.state} {exc.try_number}")
        finally:
            connection.close()

    threads = [threading.Thread(target=press) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results.count("cleared") == 1, results
    (lost,) = [outcome for outcome in results if outcome != "cleared"]
    assert lost.startswith("409 "), results  # it names the task's state and try now
    run = wait_for_run(run.id)
    assert tries(run) == {"a": ("success", 2), "b": ("success", 2), "c": ("success", 2)}
    assert Repair.objects.filter(run=run).count() == 1
    assert_settled(run)
