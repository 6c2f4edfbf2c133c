"""Fault injection with real workers, Redis and PostgreSQL: a killed worker, a stopped one,
an emptied broker, every message twice, a cancel, a broker down at trigger time, two beats.

Each run must reach its final state with every successful attempt's side effect (a line
"run task try" appended to a file) done exactly once, and nothing left running or queued.
The reconciler is driven by the tests themselves (testkit.engine.reconcile_until), so
repairs happen as soon as they are due; test_chaos_postgres.py runs it through beat.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

from dags.models import Dag, Pool
from runs.models import DagRun, RunSlots, TaskAttempt, TaskInstance
from runs.services import cancel_run, trigger_run
from runs.states import RunState, TaskState
from testkit.engine import (
    ROOT,
    database_url,
    process_group_alive,
    reconcile_until,
    submit,
    wait_for,
    wait_for_run,
)
from testkit.redis_claim import LOCK_KEY
from workflows.reconciler import WORKER_LOST, reconcile

pytestmark = [pytest.mark.chaos, pytest.mark.django_db(transaction=True)]

# Workers that are killed or stopped give a silent attempt up after 3 s instead of 60, and
# wait 2 s (not 30) for running attempts when told to stop.
CHAOS_ENV = {
    "FLOWFORGE_LEASE_SECS": "3",
    "FLOWFORGE_HEARTBEAT_SECS": "0.5",
    "FLOWFORGE_SHUTDOWN_GRACE_SECS": "2",
}


@pytest.fixture
def effects(tmp_path) -> Path:
    return tmp_path / "effects"


@pytest.fixture(autouse=True)
def quick_requeue(settings):
    """The reconciler passes run by the tests republish after 1 s, not 120 s."""
    settings.FLOWFORGE_REQUEUE_AFTER_SECS = 1


def effect(log: Path) -> str:
    return f'echo "$FLOWFORGE_RUN_ID $FLOWFORGE_TASK_ID $FLOWFORGE_TRY_NUMBER" >> {log}'


def task(task_id: str, command: str, **keys) -> str:
    lines = [f"  - id: {task_id}", f"    command: {json.dumps(command)}"]
    lines += [f"    {key}: {json.dumps(value)}" for key, value in keys.items()]
    return "\n".join(lines)


def dag(dag_id: str, *tasks: str, **keys) -> str:
    header = [f"id: {dag_id}"] + [f"{key}: {json.dumps(value)}" for key, value in keys.items()]
    return "\n".join([*header, "tasks:", *tasks]) + "\n"


def instance(run, task_id: str) -> TaskInstance:
    return TaskInstance.objects.get(run=run, task_id=task_id)


def assert_finished_once(run, log: Path, state: str = RunState.SUCCESS) -> None:
    """The run ended in `state`; each successful task's side effect happened exactly once,
    by its successful attempt; no side effect happened twice; nothing is left in flight."""
    run.refresh_from_db()
    assert run.state == state
    lines = Counter(log.read_text().splitlines()) if log.exists() else Counter()
    assert [line for line, n in lines.items() if n > 1] == []
    for ti in run.task_instances.all():
        assert ti.state in TaskState.FINAL, (ti.task_id, ti.state)
        if ti.state == TaskState.SUCCESS:
            assert lines[f"{run.id} {ti.task_id} {ti.try_number}"] == 1, ti.task_id
            assert ti.attempts.get(try_number=ti.try_number).state == TaskState.SUCCESS
    in_flight = (TaskState.RUNNING, TaskState.QUEUED, TaskState.UP_FOR_RETRY, TaskState.PENDING)
    assert not TaskInstance.objects.filter(run=run, state__in=in_flight).exists()


def running_on(run, task_id: str, worker) -> bool:
    ti = instance(run, task_id)
    return ti.state == TaskState.RUNNING and ti.worker.startswith(worker.hostname_prefix)


def test_sigkill_of_a_worker_mid_task_leaves_the_run_to_a_second_worker(launch_worker, effects):
    doomed = launch_worker("doomed", ["chaos-kill"], CHAOS_ENV).wait_ready()
    slow_first_try = f'[ "$FLOWFORGE_TRY_NUMBER" = 1 ] && sleep 60; {effect(effects)}'
    run = trigger_run(
        submit(
            dag(
                "killed",
                task("long", slow_first_try, queue="chaos-kill", retries=1, retry_delay_secs=0.1),
                task("after", effect(effects), queue="chaos-kill", depends_on=["long"]),
            )
        )
    )
    wait_for(lambda: running_on(run, "long", doomed), message="long running on doomed")

    doomed.kill()  # the worker, its pool and the attempt's shell: the host died
    rescuer = launch_worker("rescuer", ["chaos-kill"], CHAOS_ENV).wait_ready()
    reconcile_until(lambda: DagRun.objects.get(id=run.id).is_finished, 60, "the run to finish")

    assert_finished_once(run, effects)
    lost, retried = instance(run, "long").attempts.order_by("try_number")
    assert (lost.state, lost.error) == (TaskState.UP_FOR_RETRY, WORKER_LOST)
    assert lost.worker.startswith(doomed.hostname_prefix)
    assert retried.state == TaskState.SUCCESS
    assert retried.worker.startswith(rescuer.hostname_prefix)


def test_a_killed_workers_slots_come_back_and_wake_the_waiting_task(launch_worker, effects):
    Pool.objects.create(name="one-at-a-time", slots=1)
    doomed = launch_worker("doomed-slots", ["chaos-slots"], CHAOS_ENV).wait_ready()
    in_pool = {"queue": "chaos-slots", "pool": "one-at-a-time", "retries": 0}
    hog = trigger_run(
        submit(dag("hogging", task("hog", "sleep 60", **in_pool), max_active_tasks=1))
    )
    wait_for(lambda: running_on(hog, "hog", doomed), message="hog running on doomed")
    after = trigger_run(submit(dag("after", task("next", effect(effects), **in_pool))))
    wait_for(lambda: instance(after, "next").waiting_slot, message="next waiting for the slot")

    doomed.kill()  # the worker dies holding the pool's only slot and its run's slot
    launch_worker("rescuer-slots", ["chaos-slots"], CHAOS_ENV).wait_ready()
    reconcile_until(lambda: DagRun.objects.get(id=after.id).is_finished, 60, "next to run")

    assert (instance(hog, "hog").state, instance(hog, "hog").error) == (
        TaskState.FAILED,
        WORKER_LOST,
    )
    assert_finished_once(after, effects)
    assert Pool.objects.get(name="one-at-a-time").running == 0
    assert RunSlots.objects.get(run=hog).running == 0


def flush_this_sessions_broker() -> int:
    """FLUSHDB on this test session's own Redis database (never FLUSHALL: other sessions
    use the other databases), keeping the key that marks the database as ours."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    holder, ttl = client.get(LOCK_KEY), client.ttl(LOCK_KEY)
    keys = client.dbsize()
    pipe = client.pipeline(transaction=True)
    pipe.flushdb()
    pipe.set(LOCK_KEY, holder, ex=max(ttl, 60))
    pipe.execute()
    return keys


@pytest.mark.usefixtures("worker")
def test_broker_emptied_mid_run_of_fifty_tasks_still_completes(effects):
    middle = [
        task(f"t{n}", f"sleep 0.05; {effect(effects)}", depends_on=["root"]) for n in range(48)
    ]
    run = trigger_run(
        submit(
            dag(
                "flushed",
                task("root", effect(effects)),
                *middle,
                task("join", effect(effects), depends_on=[f"t{n}" for n in range(48)]),
            )
        )
    )

    def well_under_way() -> bool:
        states = Counter(run.task_instances.values_list("state", flat=True))
        return states[TaskState.SUCCESS] >= 10 and states[TaskState.QUEUED] >= 10

    wait_for(well_under_way, 60, interval=0.02, message="10 tasks done and 10 waiting")
    queue = redis.Redis.from_url(settings.CELERY_BROKER_URL).llen(settings.FLOWFORGE_DEFAULT_QUEUE)
    assert queue > 0 and flush_this_sessions_broker() > 0

    republished = 0

    def reconciled_to_the_end() -> bool:
        nonlocal republished
        republished += reconcile().republished
        return DagRun.objects.get(id=run.id).is_finished

    wait_for(reconciled_to_the_end, 120, interval=0.2, message="the run to finish")
    assert republished > 0
    assert_finished_once(run, effects)
    assert run.task_instances.count() == 50


@pytest.mark.parametrize("signalled", ["main process", "process group"])
def test_sigterm_lets_short_attempts_finish_and_hands_long_ones_back(
    launch_worker, effects, tmp_path, signalled
):
    """A stopped attempt is not the task's failure (CONTRACT section 5): with no retries
    left it goes back to queued and the next worker runs the same try, once. Process
    managers signal the main process (docker, `kill PID`) or its whole group (honcho)."""
    stopping = launch_worker("stopping", ["chaos-term"], CHAOS_ENV).wait_ready()
    marker = tmp_path / "long-started"
    # Sleeps through its first execution only; its side effect is its last line.
    long_once = f"[ -e {marker} ] || {{ touch {marker}; sleep 60; }}; {effect(effects)}"
    run = trigger_run(
        submit(
            dag(
                "stopped",
                task("short", f"sleep 1; {effect(effects)}", queue="chaos-term"),
                task("long", long_once, queue="chaos-term", retries=0),
                task("after", effect(effects), queue="chaos-term", depends_on=["short", "long"]),
            )
        )
    )
    wait_for(
        lambda: running_on(run, "short", stopping) and running_on(run, "long", stopping),
        message="both roots running on the worker to stop",
    )

    started = time.monotonic()
    if signalled == "main process":
        stopping.terminate()
    else:
        os.killpg(stopping.process.pid, signal.SIGTERM)
    wait_for(lambda: instance(run, "long").state == TaskState.QUEUED, 20, message="hand-back")
    handed_back = instance(run, "long")
    stopping.process.wait(timeout=20)
    stopped_in = time.monotonic() - started
    successor = launch_worker("successor", ["chaos-term"], CHAOS_ENV).wait_ready()
    # No reconciler here: the stopped worker handed the long task back itself.
    wait_for_run(run.id, timeout=30)

    assert stopping.process.returncode == 0
    assert 2 <= stopped_in < 2 + 6, stopped_in  # the grace, then the attempt's clean stop
    assert (handed_back.try_number, handed_back.worker) == (0, "")
    assert_finished_once(run, effects)
    short = instance(run, "short").attempts.get()
    assert short.state == TaskState.SUCCESS and short.worker.startswith(stopping.hostname_prefix)
    (long,) = instance(run, "long").attempts.all()  # the stopped try was given back
    assert (long.try_number, long.state) == (1, TaskState.SUCCESS)
    assert long.worker.startswith(successor.hostname_prefix)
    assert not TaskInstance.objects.filter(run=run, task_id="long").exclude(try_number=1).exists()


class DuplicatingRelay(threading.Thread):
    """Moves every message published to one queue into another, twice: a broker that
    delivers everything twice. The copy gets its own delivery tag, as a redelivery has."""

    def __init__(self, source: str, target: str) -> None:
        super().__init__(daemon=True)
        self.source, self.target = source, target
        self.client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        self.relayed = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            item = self.client.brpop([self.source], timeout=0.2)
            if item is None:
                continue
            message = json.loads(item[1])
            copy = json.loads(item[1])
            copy["properties"]["delivery_tag"] = str(uuid.uuid4())
            self.client.lpush(self.target, json.dumps(message), json.dumps(copy))
            self.relayed += 1


@pytest.mark.usefixtures("worker")
def test_every_message_delivered_twice_runs_each_attempt_once(effects):
    prefix = settings.FLOWFORGE_QUEUE_PREFIX
    relay = DuplicatingRelay(prefix + "twice", settings.FLOWFORGE_DEFAULT_QUEUE)
    relay.start()
    flaky = f'[ "$FLOWFORGE_TRY_NUMBER" = 1 ] && exit 1; {effect(effects)}'
    try:
        run = trigger_run(
            submit(
                dag(
                    "twice",
                    task("root", effect(effects), queue="twice"),
                    *[
                        task(f"t{n}", effect(effects), queue="twice", depends_on=["root"])
                        for n in range(4)
                    ],
                    task("flaky", flaky, queue="twice", depends_on=["root"], retries=1),
                    task("join", effect(effects), queue="twice", depends_on=["t0", "flaky"]),
                )
            )
        )
        wait_for_run(run.id, timeout=60)
    finally:
        relay.done.set()
        relay.join()

    assert_finished_once(run, effects)
    # 7 first attempts and the retry, each sent once by the engine, delivered twice.
    assert relay.relayed == 8
    assert TaskAttempt.objects.filter(task_instance__run=run).count() == 8
    flaky_attempts = instance(run, "flaky").attempts.order_by("try_number")
    assert [a.state for a in flaky_attempts] == [TaskState.UP_FOR_RETRY, TaskState.SUCCESS]


@pytest.mark.usefixtures("worker")
def test_cancel_kills_a_running_sleep_600_within_5_seconds(tmp_path):
    pid_file = tmp_path / "pid"
    run = trigger_run(submit(dag("cancelled", task("sleeper", f"echo $$ > {pid_file}; sleep 600"))))
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), message="the shell")
    group = int(pid_file.read_text())
    assert instance(run, "sleeper").state == TaskState.RUNNING

    started = time.monotonic()
    cancel_run(run)
    wait_for(lambda: not process_group_alive(group), timeout=5, message="the process group to go")
    print(f"process group gone {time.monotonic() - started:.2f} s after the cancel")

    attempt = wait_for(lambda: instance(run, "sleeper").attempts.first(), message="the attempt")
    assert (attempt.state, attempt.error) == (TaskState.CANCELLED, "cancelled")
    run.refresh_from_db()
    assert run.state == RunState.CANCELLED
    assert instance(run, "sleeper").state == TaskState.CANCELLED


def nap_once(dag_id: str, tmp_path: Path, queue: str) -> str:
    return f"""
id: {dag_id}
params: {{marker: "{tmp_path / "marker"}", effects: "{tmp_path / "effects"}"}}
tasks:
  - id: nap
    type: python
    callable: workflows.tests.engine_callables:nap_once
    queue: {queue}
"""


@pytest.mark.usefixtures("worker")
def test_cancel_interrupts_a_running_python_callable(tmp_path):
    run = trigger_run(submit(nap_once("cancel-callable", tmp_path, "default")))
    wait_for(lambda: (tmp_path / "marker").exists(), message="the callable to start")

    cancel_run(run)

    attempt = wait_for(lambda: instance(run, "nap").attempts.first(), 10, message="the attempt")
    assert (attempt.state, attempt.error) == (TaskState.CANCELLED, "cancelled")
    assert not (tmp_path / "effects").exists()  # stopped where it slept, not at its end


def test_sigterm_hands_a_running_python_callable_back(launch_worker, tmp_path):
    stopping = launch_worker("stopping", ["chaos-callable"], CHAOS_ENV).wait_ready()
    run = trigger_run(submit(nap_once("stopped-callable", tmp_path, "chaos-callable")))
    wait_for(lambda: (tmp_path / "marker").exists(), message="the callable to start")

    stopping.terminate()
    stopping.process.wait(timeout=20)
    assert instance(run, "nap").state == TaskState.QUEUED
    launch_worker("successor", ["chaos-callable"], CHAOS_ENV).wait_ready()
    run = wait_for_run(run.id, timeout=30)

    assert run.state == RunState.SUCCESS
    (attempt,) = instance(run, "nap").attempts.all()
    assert (attempt.try_number, attempt.state) == (1, TaskState.SUCCESS)
    assert (tmp_path / "effects").read_text() == "napped\n"


def unused_port(listening: bool) -> tuple[int, socket.socket]:
    """A port with nothing behind it, or one that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    if listening:
        sock.listen(16)
    else:
        sock.close()
    return port, sock


TRIGGER_AND_TIME = """
import time, django
django.setup()
from runs.services import trigger_run
started = time.monotonic()
run = trigger_run("{dag_id}")
print(run.id, time.monotonic() - started)
"""


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("broker", ["refusing", "silent"])
def test_trigger_with_broker_down_answers_at_once_and_runs_later(broker, effects):
    submit(dag(f"offline-{broker}", task("only", effect(effects))))
    port, sock = unused_port(listening=broker == "silent")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "flowforge.settings",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/0",
        "DATABASE_URL": database_url(connection.settings_dict),
    }
    env.pop("FLOWFORGE_TEST_DB_NAME")
    with sock:
        done = subprocess.run(
            [sys.executable, "-c", TRIGGER_AND_TIME.format(dag_id=f"offline-{broker}")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    run_id, seconds = done.stdout.split()
    assert "could not publish" in done.stderr
    assert float(seconds) < (1 if broker == "refusing" else 3.5), seconds
    run = DagRun.objects.get(id=run_id)
    assert instance(run, "only").state == TaskState.QUEUED

    reconcile_until(lambda: DagRun.objects.get(id=run_id).is_finished, 30, "the run to finish")
    assert_finished_once(run, effects)


def test_two_beats_firing_the_same_tick_make_one_run():
    from runs.scheduler import schedule_due

    submit(dag("ticking", task("only", "true", queue="nobody-listens"), schedule="* * * * *"))
    due = Dag.objects.get(dag_id="ticking").next_run_at + timedelta(seconds=1)
    beats = 4
    barrier = threading.Barrier(beats)
    made: list[str | None] = []

    def beat() -> None:
        try:
            barrier.wait(timeout=10)
            made.append(schedule_due(now=due).created)
        finally:
            connection.close()  # each thread has its own connection

    threads = [threading.Thread(target=beat) for _ in range(beats)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert len(made) == beats
    assert sum(made) == 1
    assert DagRun.objects.filter(dag__dag_id="ticking", triggered_by="schedule").count() == 1
