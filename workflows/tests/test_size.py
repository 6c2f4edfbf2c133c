"""Large fan-outs finish, and the engine's queries per task do not grow with the DAG."""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from runs.models import TaskInstance
from runs.services import trigger_run
from testkit.engine import submit, wait_for_run
from workflows.attempts import run_attempt

pytestmark = pytest.mark.django_db(transaction=True)


def fan_out_yaml(dag_id: str, width: int, queue: str = "default") -> str:
    lines = [
        f"id: {dag_id}",
        "tasks:",
        "  - id: root",
        "    type: python",
        "    callable: workflows.tests.engine_callables:noop",
        f"    queue: {queue}",
    ]
    for n in range(width):
        lines += [
            f"  - id: t{n}",
            "    type: python",
            "    callable: workflows.tests.engine_callables:noop",
            "    depends_on: [root]",
            f"    queue: {queue}",
        ]
    lines += [
        "  - id: join",
        "    type: python",
        "    callable: workflows.tests.engine_callables:noop",
        f"    depends_on: [{', '.join(f't{n}' for n in range(width))}]",
        f"    queue: {queue}",
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.slow
@pytest.mark.usefixtures("worker")
def test_thousand_wide_fan_out_completes():
    dag = submit(fan_out_yaml("wide", 1000))
    run = wait_for_run(trigger_run(dag).id, timeout=240)
    assert run.state == "success"
    states = set(TaskInstance.objects.filter(run=run).values_list("state", flat=True))
    assert states == {"success"}
    join = TaskInstance.objects.get(run=run, task_id="join")
    last_middle = max(
        TaskInstance.objects.filter(run=run)
        .exclude(task_id__in=["root", "join"])
        .values_list("finished_at", flat=True)
    )
    assert join.started_at >= last_middle


def queries_per_task(width: int) -> float:
    """Run every task of a fan-out in this process, counting the engine's queries.

    The DAG's queue has no consumer, so the messages the engine publishes wait in the
    broker while this test plays the worker, one claimed attempt at a time.
    """
    queue = f"nobody-{uuid.uuid4().hex[:8]}"
    dag = submit(fan_out_yaml(f"count-{width}", width, queue))
    run = trigger_run(dag)
    executed = queries = 0
    while ready := list(
        TaskInstance.objects.filter(run=run, state="queued").values_list("id", "try_number")
    ):
        for instance_id, try_number in ready:
            with CaptureQueriesContext(connection) as captured:
                assert run_attempt(instance_id, try_number, worker="in-test") is not None
            queries += len(captured)
            executed += 1
    run.refresh_from_db()
    assert run.state == "success" and executed == width + 2
    return queries / executed


def test_queries_per_task_do_not_grow_with_dag_size():
    small = queries_per_task(10)
    large = queries_per_task(1000)
    assert large <= small * 1.05, (small, large)
    # Claim, then finish (attempt row, latch release, run countdown) in one statement.
    assert large <= 2.05, large
    print(f"engine queries per task: {small:.2f} (12 tasks), {large:.2f} (1,002 tasks)")
