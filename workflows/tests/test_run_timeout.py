"""run_timeout with a real worker (CONTRACT section 7): past the deadline the run fails,
its running attempt is stopped ("run timed out") and its process is gone, the rest of
its tasks are upstream_failed."""

from __future__ import annotations

import os

import pytest
from django.utils import timezone

from runs.models import DagRun, TaskInstance
from runs.services import trigger_run
from runs.timeouts import time_out_due_runs
from testkit.engine import submit, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_run_past_its_timeout_fails_and_its_sleep_is_killed(worker, tmp_path):
    pid_file = tmp_path / "pid"
    dag = submit(
        f"""
id: slowpoke
run_timeout: 3s
tasks:
  - {{id: nap, command: "echo $$ > {pid_file}; exec sleep 600"}}
  - {{id: after, command: "true", depends_on: [nap]}}
"""
    )
    run = trigger_run(dag)
    pid = int(
        wait_for(
            lambda: pid_file.exists() and pid_file.read_text().strip(), 30, message="the sleep"
        )
    )
    run.refresh_from_db()
    assert run.deadline_at == run.started_at + timezone.timedelta(seconds=3)

    # What beat's once-a-second pass does, as often.
    def timed_out() -> bool:
        time_out_due_runs()
        return DagRun.objects.get(id=run.id).state == "failed"

    wait_for(timed_out, 15, interval=1, message="the run to time out")
    failed_at = DagRun.objects.get(id=run.id).finished_at
    assert failed_at - run.deadline_at < timezone.timedelta(seconds=5)

    nap = TaskInstance.objects.get(run=run, task_id="nap")
    after = TaskInstance.objects.get(run=run, task_id="after")
    assert (nap.state, nap.error, after.state) == ("failed", "run timed out", "upstream_failed")
    assert nap.attempts.get().error == "run timed out"
    # Stopped at its next lease renewal: nothing of the run keeps running.
    wait_for(lambda: not alive(pid), 10, message="the sleep to be killed")


@pytest.mark.parametrize("how", ["retry", "clear", "rerun"])
def test_a_timed_out_run_can_be_repaired_and_gets_a_fresh_deadline(how):
    """No worker needed: the timeout is applied by hand at a chosen moment."""
    from runs import repair, states

    dag = submit(
        """
id: repairable
run_timeout: 1h
tasks:
  - {id: nap, command: "true", queue: nobody-listens}
  - {id: after, command: "true", depends_on: [nap], queue: nobody-listens}
"""
    )
    run = trigger_run(dag)
    nap = TaskInstance.objects.get(run=run, task_id="nap")
    states.claim(nap.id, 0, "w@host", 60)
    run.refresh_from_db()
    assert states.time_out_run(run.id, run.deadline_at) is not None
    run.refresh_from_db()
    assert (run.state, run.tasks_unfinished, run.tasks_failed) == ("failed", 0, 2)

    before = timezone.now()
    # Each clears nap and its downstream: the run comes back.
    if how == "rerun":
        repair.rerun(run.id)
    else:
        getattr(repair, f"{how}_task")(run.id, "nap")

    run.refresh_from_db()
    assert (run.state, run.tasks_unfinished, run.tasks_failed) == ("running", 2, 0)
    assert run.deadline_at >= before + timezone.timedelta(hours=1)


def test_a_timed_out_task_cleared_alone_sets_its_downstream_latch_afresh():
    """The timeout failed nap and its downstream without releasing nap on after's latch;
    clearing nap alone must not count it off that latch twice (a CHECK would refuse)."""
    from runs import repair, states

    run = trigger_run(
        submit(
            """
id: timed-out-then-cleared
run_timeout: 1h
tasks:
  - {id: nap, command: "true", queue: nobody-listens}
  - {id: after, command: "true", depends_on: [nap], queue: nobody-listens}
"""
        )
    )
    nap = TaskInstance.objects.get(run=run, task_id="nap")
    states.claim(nap.id, 0, "w@host", 60)
    run.refresh_from_db()
    states.time_out_run(run.id, run.deadline_at)

    run = repair.clear_task(run.id, "nap", downstream=False)

    after = TaskInstance.objects.get(run=run, task_id="after")
    assert (run.state, after.state) == ("running", "upstream_failed")
    assert (after.pending_upstream, after.upstream_failed) == (1, 0)
    assert (run.tasks_unfinished, run.tasks_failed) == (1, 1)
