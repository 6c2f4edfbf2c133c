"""The task page's live tail: a running attempt's output reaches its task instance with
the lease renewals, before the attempt ends (real worker)."""

import pytest

from runs.models import TaskInstance
from runs.services import cancel_run, trigger_run
from testkit.engine import submit, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]


@pytest.mark.parametrize(
    "task",
    [
        'command: "echo starting; echo warming up >&2; sleep 60"',
        "type: python\n    callable: workflows.tests.engine_callables:talk_then_wait",
    ],
    ids=["shell", "python"],
)
def test_a_running_attempts_output_shows_before_it_ends(task):
    run = trigger_run(submit(f"id: chatty\ntasks:\n  - id: talk\n    {task}\n"))

    def live() -> str:
        instance = TaskInstance.objects.get(run=run)
        return instance.live_output if instance.state == "running" else ""

    shown = wait_for(lambda: "warming up" in live() and live(), timeout=30, message="live output")
    assert shown.index("starting") < shown.index("warming up")  # as they came
    cancel_run(run)
