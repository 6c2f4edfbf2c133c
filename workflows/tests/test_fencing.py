"""A retry never overlaps the attempt it replaces (CONTRACT section 2): an attempt's
process group dies with the worker process that runs it, an attempt that cannot renew
its lease stops itself, and the reconciler calls an attempt lost only after that, killing
what is left of it on its host first."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from django.utils import timezone

from runs import states
from runs.models import DagRun, TaskInstance
from runs.services import trigger_run
from runs.states import TaskState
from testkit.engine import ROOT, process_group_alive, reconcile_until, submit, wait_for
from workflows.executors import AttemptContext, execute
from workflows.executors.python import stop_running_callable
from workflows.leases import Lease, LeaseKeeper
from workflows.reconciler import WORKER_LOST, reconcile

from .test_chaos import CHAOS_ENV, dag, task
from .test_executors import CALLABLES, make_task

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_attempts_group_dies_with_the_process_that_runs_it(tmp_path):
    """The process running the attempt is SIGKILLed: its fence kills the group."""
    pid_file = tmp_path / "pgid"
    runner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from workflows.executors.process import run_process;"
            f"run_process(['/bin/sh', '-c', 'echo $$ > {pid_file}; sleep 300 & sleep 300'],"
            " env={'PATH': '/usr/bin:/bin'})",
        ],
        cwd=ROOT,
    )
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), message="the attempt")
    group = int(pid_file.read_text())
    assert process_group_alive(group)

    runner.send_signal(signal.SIGKILL)
    runner.wait()

    wait_for(lambda: not process_group_alive(group), timeout=5, message="the group to die")


class Unreachable(Lease):
    """A lease whose database is never there."""

    def renew(self):
        return None


def test_a_lease_that_cannot_be_renewed_stops_its_attempt_before_it_expires():
    stopped = []
    lease = Unreachable(1, 1, lambda: False, on_stop=lambda: stopped.append(time.monotonic()))
    keeper = LeaseKeeper(interval=0.2, lease_secs=1.0)
    started = time.monotonic()
    keeper.track(lease)
    wait_for(lambda: stopped, timeout=5, message="the attempt to be stopped")
    assert lease.reason == Lease.LOST and lease.should_stop()
    # One interval before the lease ends (0.8 s), never before; the upper bound only
    # allows for a busy machine's thread scheduling.
    assert 0.8 - 0.01 <= stopped[0] - started < 1.5
    keeper.untrack(lease)


def test_a_stop_python_drops_is_sent_again_until_the_callable_stops(monkeypatch):
    dropped: list = []
    monkeypatch.setattr(sys, "unraisablehook", dropped.append)
    lease = Unreachable(1, 1, lambda: False, on_stop=stop_running_callable)
    keeper = LeaseKeeper(interval=0.2, lease_secs=1.0)
    started = time.monotonic()
    keeper.track(lease)
    try:
        # Lost at 0.8 s, while the callable is in its finalizer until 2.5 s.
        result = execute(
            AttemptContext(
                task=make_task(type="python", callable=f"{CALLABLES}:finalizer_then_sleep"),
                params={},
                upstream_outputs={},
            )
        )
    finally:
        keeper.untrack(lease)
    assert lease.reason == Lease.LOST
    assert result.cancelled and not result.succeeded, result
    assert time.monotonic() - started < 10
    assert {type(d.exc_value).__name__ for d in dropped} == {"CallableStopped"}


def test_the_reconciler_kills_what_is_left_of_a_lost_attempt_on_its_host(tmp_path):
    """The attempt's worker and fence are gone, its group is not: the reconciler kills
    it before it records the attempt lost (and before the retry is sent)."""
    run = trigger_run(submit(dag("left-behind", task("a", "true", queue="nobody", retries=1))))
    instance = TaskInstance.objects.get(run=run)
    states.claim(instance.id, 0, f"gone@{socket.gethostname()}", lease_secs=-60)
    marker = {
        "FLOWFORGE_RUN_ID": str(run.id),
        "FLOWFORGE_TASK_ID": "a",
        "FLOWFORGE_TRY_NUMBER": "1",
    }
    leftover = subprocess.Popen(
        ["/bin/sh", "-c", "sleep 300 & sleep 300"],
        env={"PATH": "/usr/bin:/bin", **marker},
        start_new_session=True,
    )
    stranger = subprocess.Popen(["sleep", "300"], start_new_session=True)  # not the attempt's
    TaskInstance.objects.filter(id=instance.id).update(pgid=leftover.pid)
    try:
        assert reconcile().lost_attempts == 1
        assert not process_group_alive(leftover.pid)
        assert process_group_alive(stranger.pid)
        attempt = TaskInstance.objects.get(id=instance.id).attempts.get(try_number=1)
        assert (attempt.error, attempt.host, attempt.pgid) == (
            WORKER_LOST,
            socket.gethostname(),
            leftover.pid,
        )
    finally:
        for process in (leftover, stranger):
            if process_group_alive(process.pid):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_lost_too_recently_is_left_to_stop_itself():
    run = trigger_run(submit(dag("recent", task("a", "true", queue="nobody"))))
    instance = TaskInstance.objects.get(run=run)
    states.claim(instance.id, 0, "gone@elsewhere", lease_secs=0)
    assert reconcile().lost_attempts == 0  # expired, but the attempt may still be stopping
    TaskInstance.objects.filter(id=instance.id).update(
        lease_expires_at=timezone.now() - timezone.timedelta(seconds=60)
    )
    assert reconcile().lost_attempts == 1


@pytest.mark.chaos
def test_sigkill_of_a_workers_processes_stops_its_attempt_before_the_retry(launch_worker, tmp_path):
    """The issue's case: a 30 s shell loop with retries: 1; SIGKILL the worker's main and
    pool processes (not the attempt's own session); a new worker runs try 2. Try 1 must
    have stopped writing before try 2 began, and never write again."""
    lines = tmp_path / "lines"
    loop = (
        'n=$([ "$FLOWFORGE_TRY_NUMBER" = 1 ] && echo 150 || echo 5); i=0;'
        f' while [ $i -lt $n ]; do echo "$FLOWFORGE_TRY_NUMBER" >> {lines}; sleep 0.2;'
        " i=$((i+1)); done"
    )
    doomed = launch_worker("doomed", ["fence"], CHAOS_ENV).wait_ready()
    run = trigger_run(submit(dag("fenced", task("loop", loop, queue="fence", retries=1))))
    wait_for(lambda: lines.exists() and lines.read_text().count("1\n") >= 3, message="try 1")
    group = wait_for(lambda: TaskInstance.objects.get(run=run).pgid, message="its process group")

    doomed.kill_worker_processes()  # SIGKILL to the main and pool processes only
    wait_for(lambda: not process_group_alive(group), timeout=5, message="try 1 to be fenced")
    written_by_try_1 = lines.read_text().count("1\n")
    launch_worker("rescuer", ["fence"], CHAOS_ENV).wait_ready()
    reconcile_until(lambda: DagRun.objects.get(id=run.id).is_finished, 60, "the run to finish")

    written = lines.read_text().splitlines()
    assert written == ["1"] * written_by_try_1 + ["2"] * 5  # try 1 stopped, then try 2 alone
    assert TaskInstance.objects.get(run=run).state == TaskState.SUCCESS
    lost = TaskInstance.objects.get(run=run).attempts.get(try_number=1)
    assert (lost.error, lost.pgid, lost.host) == (WORKER_LOST, group, socket.gethostname())
