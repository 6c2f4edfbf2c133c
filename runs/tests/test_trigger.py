"""Triggering runs: instances, params, the trigger_dag command, scheduled ticks."""

from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from dags.services import deactivate
from runs.models import DagRun
from runs.services import TriggerError, trigger_run, trigger_tick
from testkit.engine import submit

pytestmark = pytest.mark.django_db(transaction=True)

YAML = """
id: trig
params: {day: monday, size: 1}
tasks:
  - {id: a, command: "true", queue: nobody-listens}
  - {id: b, command: "true", depends_on: [a], queue: nobody-listens, retries: 2}
"""


def test_trigger_creates_instances_with_latches_and_merged_params():
    run = trigger_run(submit(YAML), params={"size": 5})
    assert run.state == "running" and run.params == {"day": "monday", "size": 5}
    rows = {ti.task_id: ti for ti in run.task_instances.all()}
    assert (rows["a"].state, rows["a"].pending_upstream) == ("queued", 0)
    assert (rows["b"].state, rows["b"].pending_upstream, rows["b"].max_tries) == ("pending", 1, 3)


def test_trigger_dag_command_prints_the_run_and_parses_params():
    submit(YAML)
    out = StringIO()
    call_command("trigger_dag", "trig", "--param", "size=7", "--param", "day=friday", stdout=out)
    run = DagRun.objects.get()
    assert str(run.id) in out.getvalue()
    assert run.params == {"day": "friday", "size": 7}
    assert run.triggered_by == "cli"


def test_trigger_of_unknown_or_deactivated_dag_is_refused():
    with pytest.raises(CommandError, match="no DAG with id 'nope'"):
        call_command("trigger_dag", "nope")
    with pytest.raises(CommandError, match="expected KEY=VALUE"):
        call_command("trigger_dag", "nope", "--param", "oops")
    deactivate(submit(YAML))
    with pytest.raises(TriggerError, match="deactivated"):
        trigger_run("trig")
    assert DagRun.objects.count() == 0


def test_a_cron_tick_makes_one_run_however_often_it_fires():
    submit(YAML)
    tick = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert trigger_tick("trig", tick) is not None
    assert trigger_tick("trig", tick) is None
    assert DagRun.objects.filter(triggered_by="schedule").count() == 1


def test_max_active_runs_queues_extra_runs():
    submit(YAML.replace("id: trig", "id: trig\nmax_active_runs: 1"))
    first, second = trigger_run("trig"), trigger_run("trig")
    assert first.state == "running"
    second.refresh_from_db()
    assert second.state == "queued"
    assert set(second.task_instances.values_list("state", flat=True)) == {"pending"}
