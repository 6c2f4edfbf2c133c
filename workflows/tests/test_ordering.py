"""The etl-pipeline sample runs in dependency order, independent tasks in parallel."""

from pathlib import Path

import pytest

from runs.services import trigger_run
from testkit.engine import submit, wait_for_run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_etl_pipeline_runs_in_dependency_order():
    dag = submit((EXAMPLES / "etl-pipeline.yaml").read_text())
    run = wait_for_run(trigger_run(dag).id, timeout=90)
    assert run.state == "success"
    t = {ti.task_id: ti for ti in run.task_instances.all()}
    users, orders, transform, load = (
        t["extract-users"],
        t["extract-orders"],
        t["transform"],
        t["load"],
    )
    # The two extracts overlap in time on the worker's two processes.
    assert users.started_at < orders.finished_at and orders.started_at < users.finished_at
    assert transform.started_at >= max(users.finished_at, orders.finished_at)
    assert load.started_at >= transform.finished_at
    assert load.finished_at == max(ti.finished_at for ti in t.values())
    assert [ti.try_number for ti in t.values()] == [1, 1, 1, 1]
