"""The reconciler repairs what a crash left behind, once, and costs little when all is well.

The crashes are set up with the state machine's own transitions (a claim whose lease is
already over is a worker that died right after claiming); the messages the reconciler
sends land in a queue nobody consumes, where they are counted.
"""

from __future__ import annotations

import base64
import importlib
import json
import time
import uuid
from datetime import timedelta

import psycopg2
import pytest
import redis
from django.apps import apps
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from runs import states
from runs.models import DagRun, DeadLetter, TaskInstance
from runs.services import trigger_run
from runs.states import RunState, TaskState
from testkit.engine import database_url, reconcile_until, submit, wait_for_run
from workflows import reconciler
from workflows.dispatch import complete_attempt
from workflows.executors import ExecutionResult
from workflows.reconciler import WORKER_LOST, reconcile

pytestmark = pytest.mark.django_db(transaction=True)


def nap(seconds: float) -> str:
    """A python callable task that runs longer than a lease."""
    time.sleep(seconds)
    return "rested"


@pytest.fixture
def queue() -> str:
    """A queue of this test's own that no worker consumes."""
    return f"nobody-{uuid.uuid4().hex[:8]}"


def waiting_messages(queue: str) -> list[tuple[int, int]]:
    """(instance id, try number) of each message waiting in `queue`."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    raw = client.lrange(settings.FLOWFORGE_QUEUE_PREFIX + queue, 0, -1)
    # Newest first in the list; Celery's message body is [args, kwargs, options].
    return [tuple(json.loads(base64.b64decode(json.loads(m)["body"]))[0]) for m in reversed(raw)]


def two_tasks(queue: str, **first_keys) -> str:
    keys = "".join(f"\n    {key}: {json.dumps(value)}" for key, value in first_keys.items())
    return f"""
id: pair-{queue}
tasks:
  - id: a
    command: "true"
    queue: {queue}{keys}
  - id: b
    command: "true"
    queue: {queue}
    depends_on: [a]
"""


def instance(run, task_id: str) -> TaskInstance:
    return TaskInstance.objects.get(run=run, task_id=task_id)


def claim_and_vanish(ti: TaskInstance) -> states.Claim:
    """A worker claims the attempt and dies at once: its lease ended long ago (past the
    time a lost attempt is given to stop itself)."""
    return states.claim(ti.id, ti.try_number, "gone@host", lease_secs=-60)


def test_lost_attempt_fails_with_worker_lost_and_is_retried_by_its_policy(queue):
    run = trigger_run(submit(two_tasks(queue, retries=1, retry_delay_secs=30)))
    claim_and_vanish(instance(run, "a"))

    repairs = reconcile()

    assert repairs.lost_attempts == 1 and repairs.total == 1
    a = instance(run, "a")
    assert (a.state, a.try_number, a.error) == (TaskState.UP_FOR_RETRY, 1, WORKER_LOST)
    assert a.next_retry_at > timezone.now() + timedelta(seconds=20)
    attempt = a.attempts.get()
    assert (attempt.state, attempt.error, attempt.worker) == (
        "up_for_retry",
        WORKER_LOST,
        "gone@host",
    )
    assert waiting_messages(queue) == [(a.id, 0), (a.id, 1)]  # the trigger's, then the retry
    assert reconcile().total == 0


def test_lost_attempt_out_of_retries_dead_letters_and_fails_the_run(queue):
    run = trigger_run(submit(two_tasks(queue)))
    claim_and_vanish(instance(run, "a"))

    assert reconcile().lost_attempts == 1

    assert instance(run, "a").state == TaskState.FAILED
    assert instance(run, "b").state == TaskState.UPSTREAM_FAILED
    assert DeadLetter.objects.get().error == WORKER_LOST
    run.refresh_from_db()
    assert run.state == RunState.FAILED


def test_attempt_whose_worker_renews_its_lease_is_left_alone(queue):
    run = trigger_run(submit(two_tasks(queue)))
    a = instance(run, "a")
    states.claim(a.id, 0, "alive@host", lease_secs=60)
    assert reconcile().total == 0
    assert instance(run, "a").state == TaskState.RUNNING


def test_worker_finishing_after_it_was_given_up_keeps_the_first_record(queue):
    run = trigger_run(submit(two_tasks(queue, retries=1)))
    claim = claim_and_vanish(instance(run, "a"))
    reconcile()

    # The worker was only slow, not dead: its completion arrives late and changes nothing.
    late = complete_attempt(
        claim=claim,
        result=ExecutionResult(succeeded=True, exit_code=0),
        compiled=reconciler.compiled_version(claim.dag_version_id),
    )

    assert late is None
    a = instance(run, "a")
    assert a.state == TaskState.UP_FOR_RETRY
    assert [(t.state, t.error) for t in a.attempts.all()] == [("up_for_retry", WORKER_LOST)]


def test_queued_instance_without_a_message_is_republished_once_per_interval(queue, settings):
    settings.FLOWFORGE_REQUEUE_AFTER_SECS = 5
    run = trigger_run(submit(two_tasks(queue)))
    a = instance(run, "a")
    assert reconcile().republished == 0  # queued just now: its message is on its way

    TaskInstance.objects.filter(id=a.id).update(queued_at=timezone.now() - timedelta(seconds=6))
    assert reconcile().republished == 1
    assert reconcile().republished == 0  # stamped: not again before another interval

    assert waiting_messages(queue) == [(a.id, 0), (a.id, 0)]
    assert instance(run, "a").queued_at > timezone.now() - timedelta(seconds=5)


def test_retry_whose_delayed_message_was_lost_is_queued_again(queue, settings):
    settings.FLOWFORGE_REQUEUE_AFTER_SECS = 5
    run = trigger_run(submit(two_tasks(queue, retries=1)))
    a = instance(run, "a")
    claim = states.claim(a.id, 0, "w@host", 60)
    states.finish_task(
        claim,
        TaskState.UP_FOR_RETRY,
        downstream=["b"],
        queue_ids={"b"},
        next_retry_at=timezone.now() - timedelta(seconds=2),
    )
    assert reconcile().overdue_retries == 0  # due only just now: its message may be on time

    TaskInstance.objects.filter(id=a.id).update(next_retry_at=timezone.now() - timedelta(seconds=6))
    assert reconcile().overdue_retries == 1

    assert instance(run, "a").state == TaskState.QUEUED
    assert waiting_messages(queue) == [(a.id, 0), (a.id, 1)]
    assert states.claim(a.id, 1, "w@host", 60).try_number == 2


def test_pending_instances_with_an_open_latch_are_decided_by_their_trigger_rule(queue):
    run = trigger_run(
        submit(
            f"""
id: latch-{queue}
tasks:
  - {{id: a, command: "true", queue: {queue}}}
  - {{id: on-success, command: "true", queue: {queue}, depends_on: [a]}}
  - {{id: on-failure, command: "true", queue: {queue}, depends_on: [a], trigger_rule: all_failed}}
"""
        )
    )
    a = instance(run, "a")
    claim = states.claim(a.id, 0, "w@host", 60)
    # `a` succeeded and its latches were counted down (none queued by the release, as an
    # older release did), then the process died before deciding what its downstream
    # tasks do.
    states.finish_task(
        claim, TaskState.SUCCESS, downstream=["on-success", "on-failure"], queue_ids=()
    )

    assert reconcile().released_pending == 2

    assert instance(run, "on-success").state == TaskState.QUEUED
    assert instance(run, "on-failure").state == TaskState.SKIPPED
    assert waiting_messages(queue)[-1] == (instance(run, "on-success").id, 0)
    run.refresh_from_db()
    assert (run.state, run.tasks_unfinished) == (RunState.RUNNING, 1)


def test_running_run_with_nothing_left_to_do_is_finished(queue):
    run = trigger_run(submit(two_tasks(queue)))
    DagRun.objects.filter(id=run.id).update(tasks_unfinished=0, tasks_failed=1)
    assert reconcile().finished_runs == 1
    run.refresh_from_db()
    assert run.state == RunState.FAILED and run.finished_at is not None


def test_queued_run_is_admitted_once_there_is_room(queue):
    dag = submit(two_tasks(queue).replace("tasks:", "max_active_runs: 1\ntasks:"))
    first, second = trigger_run(dag), trigger_run(dag)
    assert DagRun.objects.get(id=second.id).state == RunState.QUEUED
    states.cancel_run(first.id)  # and the process dies before admitting the next run

    repairs = reconcile()

    # The queued run's roots are pending with an open latch, and were rightly left alone.
    assert (repairs.admitted_runs, repairs.released_pending) == (1, 0)
    assert DagRun.objects.get(id=second.id).state == RunState.RUNNING
    assert instance(second, "a").state == TaskState.QUEUED
    assert waiting_messages(queue)[-1] == (instance(second, "a").id, 0)


def test_a_second_pass_skips_while_one_holds_the_lock(queue):
    other = psycopg2.connect(database_url(connection.settings_dict))
    try:
        other.cursor().execute("SELECT pg_advisory_lock(%s)", [reconciler.LOCK_KEY])
        assert reconcile().skipped
        # Unlock explicitly: a closed connection's locks go when its backend exits, a
        # moment after close() returns.
        other.cursor().execute("SELECT pg_advisory_unlock(%s)", [reconciler.LOCK_KEY])
    finally:
        other.close()
    assert not reconcile().skipped


@pytest.mark.parametrize("runs", [2, 20])
def test_a_pass_with_nothing_to_repair_is_a_few_queries(queue, runs):
    dag = submit(two_tasks(queue, retries=2).replace("tasks:", "max_active_runs: 100\ntasks:"))
    for _ in range(runs):
        run = trigger_run(dag)
        states.claim(instance(run, "a").id, 0, "w@host", 60)
    with CaptureQueriesContext(connection) as captured:
        assert reconcile().total == 0
    # The lock, one indexed query per kind of repair, the unlock: whatever the size.
    assert len(captured) == 8, "\n".join(q["sql"][:300] for q in captured)


def test_beat_entry_runs_the_reconciler_every_reconcile_secs(settings):
    migration = importlib.import_module("workflows.migrations.0001_reconcile_schedule")
    migration.create_schedule(apps, None)
    entry = PeriodicTask.objects.get(name=reconciler.SCHEDULE_NAME)
    assert (entry.task, entry.interval.every, entry.interval.period) == (
        "flowforge.reconcile",
        settings.FLOWFORGE_RECONCILE_SECS,
        "seconds",
    )
    assert entry.enabled and entry.queue in (None, "")  # the default queue, prefix and all

    settings.FLOWFORGE_RECONCILE_SECS = 7
    reconciler.ensure_schedule()  # what beat does when it starts
    entry.refresh_from_db()
    assert (entry.interval.every, entry.expire_seconds) == (7, 7)
    assert PeriodicTask.objects.filter(task="flowforge.reconcile").count() == 1


def test_reconcile_task_runs_a_pass():
    from workflows.tasks import reconcile as reconcile_task

    assert reconcile_task.name == "flowforge.reconcile"
    assert reconcile_task.run() == reconciler.Repairs().as_dict()


def test_python_callable_outliving_the_lease_keeps_it(launch_worker, queue):
    worker = launch_worker(
        "leased", [queue], {"FLOWFORGE_LEASE_SECS": "1", "FLOWFORGE_HEARTBEAT_SECS": "0.3"}
    )
    run = trigger_run(
        submit(
            f"""
id: napping
tasks:
  - id: nap
    type: python
    callable: workflows.tests.test_reconciler:nap
    queue: {queue}
params: {{seconds: 3}}
"""
        )
    )
    worker.wait_ready()
    # The reconciler looks all along; the attempt, running in the worker's own process,
    # renews its lease from its lease-keeping thread and is never taken for lost.
    reconcile_until(lambda: DagRun.objects.get(id=run.id).is_finished, 60, "the nap")
    run = wait_for_run(run.id)
    nap_instance = instance(run, "nap")
    assert (run.state, nap_instance.output, nap_instance.try_number) == ("success", "rested", 1)
    assert nap_instance.attempts.get().state == TaskState.SUCCESS
