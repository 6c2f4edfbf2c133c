"""A task message delivered more than once runs its attempt once."""

import pytest

from runs.messages import TaskMessage, publish_now
from runs.models import TaskInstance
from runs.services import trigger_run
from testkit.engine import submit, wait_for_run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]


def test_duplicate_messages_run_each_attempt_once(tmp_path):
    log = tmp_path / "side-effects"
    dag = submit(
        f"""
id: dup
tasks:
  - id: first
    command: echo "first $FLOWFORGE_TRY_NUMBER" >> {log}; sleep 0.5
  - id: second
    command: echo "second $FLOWFORGE_TRY_NUMBER" >> {log}
    depends_on: [first]
"""
    )
    run = trigger_run(dag)
    first = TaskInstance.objects.get(run=run, task_id="first")
    # Three more copies of the root's message, as a broker re-delivery would produce.
    publish_now([TaskMessage(first.id, 0)] * 3)
    run = wait_for_run(run.id)
    assert run.state == "success"
    assert sorted(log.read_text().splitlines()) == ["first 1", "second 1"]
    assert first.attempts.count() == 1
