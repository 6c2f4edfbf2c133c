"""/metrics (CONTRACT section 11): every counter and histogram moves by exactly what a real
worker ran, the gauges report what is stored, a repair by the reconciler is counted, and a
worker on a host of its own serves its counts on FLOWFORGE_WORKER_METRICS_PORT.

The web side is this process (Django's test client); the workers are `celery worker`
processes counting into this session's PROMETHEUS_MULTIPROC_DIR (testkit/pytest_isolation).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
import requests
from celery import current_app
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from flowforge import metrics
from runs import states, telemetry
from runs.models import TaskInstance
from runs.services import trigger_run
from testkit.engine import submit, wait_for, wait_for_run
from testkit.web import free_port
from workflows import reconciler

pytestmark = pytest.mark.django_db(transaction=True)

Samples = dict[tuple[str, frozenset], float]
COUNTERS = (
    "flowforge_tasks_enqueued_total",
    "flowforge_tasks_succeeded_total",
    "flowforge_tasks_failed_total",
    "flowforge_tasks_retried_total",
    "flowforge_tasks_dead_lettered_total",
    "flowforge_runs_started_total",
)
HISTOGRAMS = ("flowforge_task_duration_seconds", "flowforge_task_queue_wait_seconds")


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client) -> Samples:
    """GET /metrics, the finished-state counts taken just before (a scrape itself only
    starts their refresh, in the background)."""
    metrics.refresh_snapshot()
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return parse(response.content.decode())


def scrape_when(client, condition) -> Samples | None:
    samples = scrape(client)
    return samples if condition(samples) else None


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def deltas(before: Samples, after: Samples, dag_id: str) -> dict[str, float]:
    """What moved for one DAG: each counter, and each histogram's count."""
    moved = {
        name: value(after, name, dag_id=dag_id) - value(before, name, dag_id=dag_id)
        for name in COUNTERS
    }
    for name in HISTOGRAMS:
        moved[f"{name}_count"] = value(after, f"{name}_count", dag_id=dag_id) - value(
            before, f"{name}_count", dag_id=dag_id
        )
    for state in ("success", "failed", "cancelled"):
        name = "flowforge_runs_finished_total"
        moved[f"{name}:{state}"] = value(after, name, dag_id=dag_id, state=state) - value(
            before, name, dag_id=dag_id, state=state
        )
    return moved


def gauge_deltas(before: Samples, after: Samples, name: str, states_: tuple[str, ...]) -> dict:
    return {s: value(after, name, state=s) - value(before, name, state=s) for s in states_}


FOUR_TASKS = """
id: {dag_id}
tasks:
  - id: extract
    command: "true"
  - id: good
    command: "sleep 0.2"
    depends_on: [extract]
  - id: flaky
    command: "exit 3"
    retries: 1
    retry_delay_secs: 0.1
    depends_on: [extract]
  - id: load
    command: "true"
    depends_on: [good, flaky]
"""


@pytest.mark.usefixtures("worker")
def test_a_run_moves_every_counter_and_histogram_by_what_ran(client):
    dag_id = f"metered-{uuid.uuid4().hex[:8]}"
    before = scrape(client)

    run = wait_for_run(trigger_run(submit(FOUR_TASKS.format(dag_id=dag_id))).id)

    assert run.state == "failed"  # flaky failed twice, so load never ran
    # Four attempts: extract, good, and flaky twice (its retry is one more enqueue).
    expected = {
        "flowforge_tasks_enqueued_total": 4,
        "flowforge_tasks_succeeded_total": 2,
        "flowforge_tasks_failed_total": 1,
        "flowforge_tasks_retried_total": 1,
        "flowforge_tasks_dead_lettered_total": 1,
        "flowforge_runs_started_total": 1,
        "flowforge_task_duration_seconds_count": 4,
        "flowforge_task_queue_wait_seconds_count": 4,
        "flowforge_runs_finished_total:success": 0,
        "flowforge_runs_finished_total:failed": 1,
        "flowforge_runs_finished_total:cancelled": 0,
    }
    # The worker counts right after its commit, a moment after the run shows failed.
    after = wait_for(
        lambda: scrape_when(client, lambda s: deltas(before, s, dag_id) == expected),
        timeout=10,
        message=f"the counts {expected}",
    )
    duration = value(after, "flowforge_task_duration_seconds_sum", dag_id=dag_id)
    assert 0.2 <= duration < 30  # `good` slept 0.2 s
    waited = value(after, "flowforge_task_queue_wait_seconds_sum", dag_id=dag_id)
    assert 0 <= waited < 30
    inf = value(after, "flowforge_task_duration_seconds_bucket", dag_id=dag_id, le="+Inf")
    assert inf == 4

    task_states = ("success", "failed", "upstream_failed", "pending", "queued", "running")
    assert gauge_deltas(before, after, "flowforge_task_instances", task_states) == {
        "success": 2,
        "failed": 1,
        "upstream_failed": 1,
        "pending": 0,
        "queued": 0,
        "running": 0,
    }
    assert gauge_deltas(before, after, "flowforge_runs", ("failed", "running")) == {
        "failed": 1,
        "running": 0,
    }
    dead_letters = "flowforge_dead_letter_depth"
    assert value(after, dead_letters) - value(before, dead_letters) == 1
    # Nobody consumes the session's dead_letter queue: the notice waits there.
    depth = "flowforge_queue_depth"
    assert value(after, depth, queue="dead_letter") - value(before, depth, queue="dead_letter") == 1
    assert ("flowforge_queue_depth", frozenset({("queue", "default")})) in after
    wait_for(lambda: value(scrape(client), "flowforge_workers_alive") >= 1, timeout=20)


def two_tasks(dag_id: str, queue: str) -> str:
    return f"""
id: {dag_id}
tasks:
  - id: a
    command: "true"
    queue: {queue}
  - id: b
    command: "true"
    queue: {queue}
    depends_on: [a]
"""


@pytest.mark.usefixtures("worker")
def test_in_flight_gauges_and_a_repair_by_the_reconciler_in_a_worker(client):
    dag_id, queue = f"repaired-{uuid.uuid4().hex[:8]}", f"nobody-{uuid.uuid4().hex[:8]}"
    before = scrape(client)
    run = trigger_run(submit(two_tasks(dag_id, queue)))
    queued = scrape(client)
    assert gauge_deltas(before, queued, "flowforge_task_instances", ("pending", "queued")) == {
        "pending": 1,
        "queued": 1,
    }
    assert (
        value(queued, "flowforge_runs", state="running")
        - value(before, "flowforge_runs", state="running")
        == 1
    )
    # A worker claims `a` and dies at once: its lease ended long ago.
    a = TaskInstance.objects.get(run=run, task_id="a")
    states.claim(a.id, a.try_number, "gone@host", lease_secs=-60)
    claimed = scrape(client)
    assert gauge_deltas(queued, claimed, "flowforge_task_instances", ("queued", "running")) == {
        "queued": -1,
        "running": 1,
    }

    current_app.send_task("flowforge.reconcile", queue=settings.FLOWFORGE_DEFAULT_QUEUE)

    repairs = "flowforge_reconciler_repairs_total"
    after = wait_for(
        lambda: scrape_when(
            client,
            lambda s: value(s, "flowforge_runs_finished_total", dag_id=dag_id, state="failed"),
        ),
        timeout=20,
        message="the reconciler's repair to be counted",
    )
    assert (
        value(after, repairs, kind="lost_attempts") - value(before, repairs, kind="lost_attempts")
        == 1
    )
    assert deltas(before, after, dag_id) == {
        "flowforge_tasks_enqueued_total": 1,  # the trigger's; b was never queued
        "flowforge_tasks_succeeded_total": 0,
        "flowforge_tasks_failed_total": 1,  # "worker lost", out of retries
        "flowforge_tasks_retried_total": 0,
        "flowforge_tasks_dead_lettered_total": 1,
        "flowforge_runs_started_total": 1,
        "flowforge_task_duration_seconds_count": 1,
        # No message started the lost attempt's end, so no wait is known for it.
        "flowforge_task_queue_wait_seconds_count": 0,
        "flowforge_runs_finished_total:success": 0,
        "flowforge_runs_finished_total:failed": 1,
        "flowforge_runs_finished_total:cancelled": 0,
    }
    # The series that have not moved are there, at 0: a query or alert sees 0, not nothing.
    for name in (*COUNTERS, "flowforge_task_queue_wait_seconds_count"):
        assert (name, frozenset({("dag_id", dag_id)})) in after, name
    assert (
        "flowforge_runs_finished_total",
        frozenset({("dag_id", dag_id), ("state", "cancelled")}),
    ) in after
    kinds = {dict(labels)["kind"] for name, labels in after if name == repairs}
    assert kinds == {kind for kind, _ in reconciler._REPAIRS}


def test_a_scrape_is_one_query_over_what_is_in_flight(client):
    metrics.refresh_snapshot()
    client.get("/metrics")  # the URLconf and the registry, once per process
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/metrics").status_code == 200
    assert len(captured) == 1, [query["sql"] for query in captured]


def test_cancelled_runs_are_counted(client):
    from runs.services import cancel_run

    dag_id = f"cancelled-{uuid.uuid4().hex[:8]}"
    before = scrape(client)
    cancel_run(trigger_run(submit(two_tasks(dag_id, f"nobody-{uuid.uuid4().hex[:8]}"))))
    after = scrape(client)
    name = "flowforge_runs_finished_total"
    assert value(after, name, dag_id=dag_id, state="cancelled") == 1
    assert (
        value(after, "flowforge_runs", state="cancelled")
        - value(before, "flowforge_runs", state="cancelled")
        == 1
    )


def test_jobs_share_one_dag_label():
    assert telemetry.dag_label("job-0123456789abcdef") == "job"
    assert telemetry.dag_label("workflow-0123456789abcdef") == "workflow"
    assert telemetry.dag_label("etl-pipeline") == "etl-pipeline"


def test_a_worker_on_a_host_of_its_own_serves_its_counts_on_its_port(
    client, launch_worker, tmp_path
):
    dag_id, queue = f"remote-{uuid.uuid4().hex[:8]}", f"remote-{uuid.uuid4().hex[:8]}"
    port = free_port()
    worker = launch_worker(
        "remote",
        [queue],
        {"FLOWFORGE_WORKER_METRICS_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
    )
    worker.wait_ready()
    yaml = f"id: {dag_id}\ntasks:\n  - id: only\n    command: 'true'\n    queue: {queue}\n"

    run = wait_for_run(trigger_run(submit(yaml)).id)

    assert run.state == "success"

    def served() -> Samples | None:
        try:
            own = parse(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
        except requests.RequestException:
            return None
        return own if value(own, "flowforge_tasks_succeeded_total", dag_id=dag_id) else None

    own = wait_for(served, timeout=20, message=f"the worker's endpoint on port {port}")
    assert value(own, "flowforge_tasks_succeeded_total", dag_id=dag_id) == 1
    assert value(own, "flowforge_task_duration_seconds_count", dag_id=dag_id) == 1
    assert value(own, "flowforge_runs_finished_total", dag_id=dag_id, state="success") == 1
    # Only its counts: the gauges are the web's, and so is the trigger (this process).
    assert not any(name == "flowforge_runs" for name, _ in own)
    assert value(own, "flowforge_tasks_enqueued_total", dag_id=dag_id) == 0
    web = scrape(client)
    assert value(web, "flowforge_tasks_enqueued_total", dag_id=dag_id) == 1
    assert value(web, "flowforge_tasks_succeeded_total", dag_id=dag_id) == 0  # not twice


def test_what_another_program_counts_into_the_directory_is_left_to_it(client):
    """Flower started with this package (`celery -A flowforge flower`, without the
    Procfile's `PROMETHEUS_MULTIPROC_DIR=`) counts its flower_* metrics into the host's
    directory; Prometheus scrapes them from Flower, so the web's scrape leaves them out."""
    program = (
        "import sys, flowforge\n"
        "from prometheus_client import Counter\n"
        "Counter('flower_events', 'Flower', ['type']).labels('task-succeeded').inc()\n"
        "print('counted', flush=True)\n"
        "sys.stdin.read()\n"  # runs on, as Flower does, until the test is done
    )
    flower = subprocess.Popen(
        [sys.executable, "-c", program],
        cwd=settings.BASE_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert flower.stdout.readline() == "counted\n"
        written = CollectorRegistry()
        MultiProcessCollector(written, path=str(telemetry.multiprocess_dir()))
        assert written.get_sample_value("flower_events_total", {"type": "task-succeeded"}) == 1

        served = scrape(client)
    finally:
        flower.communicate("", timeout=30)

    assert not [name for name, _ in served if not name.startswith("flowforge_")]
    assert any(name == "flowforge_runs" for name, _ in served)


def test_the_directory_is_emptied_only_when_all_its_writers_are_gone(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(gone.stdout)
    dead = [tmp_path / f"counter_{dead_pid}.db", tmp_path / f"histogram_{dead_pid}.db"]
    for path in dead:
        path.write_bytes(b"")
    alive = tmp_path / f"counter_{os.getppid()}.db"
    alive.write_bytes(b"")

    dead_mark = tmp_path / f"process_{dead_pid}.alive"
    dead_mark.touch()

    telemetry.prepare_multiprocess_dir()
    assert all(path.exists() for path in [*dead, alive])  # a writer lives: counts stay
    assert not dead_mark.exists()  # a mark holds no counts
    assert (tmp_path / f"process_{os.getpid()}.alive").exists()  # this process serves

    alive.unlink()
    (tmp_path / f"process_{os.getpid()}.alive").rename(tmp_path / f"process_{dead_pid}.alive")
    telemetry.prepare_multiprocess_dir()
    assert not any(path.exists() for path in dead)  # every user gone: a fresh start
