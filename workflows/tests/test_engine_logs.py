"""Engine log lines carry the ids an operator filters on, as fields of their own."""

import logging

import pytest

from dags.compiled import compiled_version
from runs import states
from runs.models import TaskInstance
from runs.services import trigger_run
from testkit.engine import submit
from workflows.dispatch import complete_attempt
from workflows.executors import ExecutionResult

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_attempts_outcome_is_logged_with_run_dag_task_and_try(caplog):
    dag = submit("id: logged\ntasks:\n  - {id: only, command: 'true', queue: nobody}\n")
    run = trigger_run(dag)
    claim = states.claim(TaskInstance.objects.get(run=run).id, 0, "w@host", 60)
    with caplog.at_level(logging.INFO, logger="workflows.dispatch"):
        complete_attempt(
            claim, ExecutionResult(succeeded=True), compiled_version(claim.dag_version_id)
        )
    (record,) = [r for r in caplog.records if r.name == "workflows.dispatch"]
    fields = (record.run_id, record.dag_id, record.task_id, record.try_number)
    assert fields == (str(run.id), "logged", "only", 1)
    assert record.getMessage() == "logged/only try 1: success "
