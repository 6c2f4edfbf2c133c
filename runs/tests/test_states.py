"""The state machine refuses what CONTRACT section 2 does not allow, changing nothing."""

import pytest
from django.utils import timezone

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
        assert target not in states.TASK_TRANSITIONS.get(source, ())
    assert TaskState.QUEUED in states.TASK_TRANSITIONS[TaskState.UP_FOR_RETRY]


def test_refused_finish_changes_nothing():
    run = trigger_run(submit(YAML))
    a = TaskInstance.objects.get(run=run, task_id="a")
    assert a.state == "queued"
    claim = states.Claim(a.id, str(run.id), "a", 0, 1, 0, {}, "w@host", timezone.now())
    with pytest.raises(TransitionRefused):
        states.finish_task(claim, TaskState.QUEUED, downstream=[], queue_ids=())
    # running -> success is allowed, but `a` is not running: the guard refuses it.
    finish = states.finish_task(claim, TaskState.SUCCESS, downstream=["b"], queue_ids={"b"})
    assert finish == states.Finish(False, [], None)
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
