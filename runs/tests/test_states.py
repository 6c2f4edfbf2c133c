"""The state machine refuses what CONTRACT section 2 does not allow, changing nothing."""

import pytest

from runs import states
from runs.models import TaskInstance
from runs.services import trigger_run
from runs.states import TaskState, TransitionRefused
from testkit.engine import submit

pytestmark = pytest.mark.django_db(transaction=True)

YAML = """
id: machine
tasks:
  - {id: a, command: "true", queue: nobody-listens}
  - {id: b, command: "true", depends_on: [a], queue: nobody-listens}
"""


def test_transitions_table_matches_the_contract():
    for source, target in [
        (TaskState.SUCCESS, TaskState.QUEUED),
        (TaskState.PENDING, TaskState.RUNNING),
        (TaskState.QUEUED, TaskState.SUCCESS),
        (TaskState.FAILED, TaskState.RUNNING),
    ]:
        with pytest.raises(TransitionRefused):
            states.check_task_transition(source, target)
    states.check_task_transition(TaskState.UP_FOR_RETRY, TaskState.QUEUED)


def test_refused_finish_changes_nothing():
    run = trigger_run(submit(YAML))
    a = TaskInstance.objects.get(run=run, task_id="a")
    assert a.state == "queued"
    with pytest.raises(TransitionRefused):
        states.finish_attempt(a.id, 0, TaskState.QUEUED)
    # running -> success is allowed, but `a` is not running: the guard refuses it.
    assert states.finish_attempt(a.id, 0, TaskState.SUCCESS) is False
    a.refresh_from_db()
    assert (a.state, a.try_number, a.finished_at) == ("queued", 0, None)


def test_claim_is_won_once():
    run = trigger_run(submit(YAML))
    a = TaskInstance.objects.get(run=run, task_id="a")
    first = states.claim(a.id, 0, "w1", 60)
    assert first is not None and first.try_number == 1 and first.task_id == "a"
    assert states.claim(a.id, 0, "w2", 60) is None  # duplicate message
    assert states.claim(a.id, 1, "w2", 60) is None  # not queued
    a.refresh_from_db()
    assert (a.state, a.try_number, a.worker) == ("running", 1, "w1")


def test_pending_task_is_not_claimable():
    run = trigger_run(submit(YAML))
    b = TaskInstance.objects.get(run=run, task_id="b")
    assert (b.state, b.pending_upstream) == ("pending", 1)
    assert states.claim(b.id, 0, "w1", 60) is None
