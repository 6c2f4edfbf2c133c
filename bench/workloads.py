"""FlowForge workloads: benchmark DAGs (chains and fan-outs of no-op python tasks), their
runs, and the timings the database recorded for them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import yaml
from django.db import transaction
from django.db.models import Count, Max, Min

from dags.models import Dag
from dags.services import submit_dag
from runs.models import DagRun, TaskInstance
from runs.services import trigger_run
from runs.states import RunState
from testkit.engine import wait_for

NOOP = "bench.tasks:noop"
MAX_ACTIVE_RUNS = 1_000_000  # the bench measures the engine, not admission control


def _task(task_id: str, queue: str, depends_on: list[str] | None = None) -> dict:
    task = {"id": task_id, "type": "python", "callable": NOOP, "queue": queue}
    if depends_on:
        task["depends_on"] = depends_on
    return task


def chain_spec(dag_id: str, length: int, queue: str = "default") -> dict:
    """t0000 -> t0001 -> ...: each task depends on the one before it."""
    names = [f"t{n:04d}" for n in range(length)]
    tasks = [_task(name, queue, names[n - 1 : n]) for n, name in enumerate(names)]
    return {"id": dag_id, "max_active_runs": MAX_ACTIVE_RUNS, "tasks": tasks}


def fan_out_spec(dag_id: str, width: int, queue: str = "default") -> dict:
    """A root and width-1 tasks that depend on it only: `width` task instances a run."""
    tasks = [_task("root", queue)]
    tasks += [_task(f"t{n:05d}", queue, ["root"]) for n in range(1, width)]
    return {"id": dag_id, "max_active_runs": MAX_ACTIVE_RUNS, "tasks": tasks}


def submit(spec: dict) -> Dag:
    return submit_dag(yaml.safe_dump(spec, sort_keys=False)).dag


def trigger_batch(dag: Dag, count: int) -> list[str]:
    """Trigger `count` runs in one transaction: their first messages go out together when
    it commits, so a worker started afterwards finds all of them waiting."""
    with transaction.atomic():
        return [str(trigger_run(dag, triggered_by="bench").id) for _ in range(count)]


def wait_runs(run_ids: list[str], timeout: float, check=None) -> None:
    """Poll the database until every run is final; `check` (e.g. a worker still alive?)
    is called on each poll and may raise."""

    def finished() -> bool:
        if check:
            check()
        return not DagRun.objects.filter(id__in=run_ids).exclude(state__in=RunState.FINAL).count()

    wait_for(finished, timeout=timeout, interval=0.1, message=f"{len(run_ids)} run(s) to finish")


def failed_runs(run_ids: list[str]) -> int:
    return DagRun.objects.filter(id__in=run_ids).exclude(state=RunState.SUCCESS).count()


@dataclass(frozen=True)
class Window:
    """First start and last finish of a set of task instances (from the database)."""

    count: int
    first_start: datetime
    last_finish: datetime

    @property
    def seconds(self) -> float:
        return (self.last_finish - self.first_start).total_seconds()

    @property
    def per_second(self) -> float:
        return self.count / self.seconds


def task_window(run_ids: list[str]) -> Window:
    found = TaskInstance.objects.filter(run_id__in=run_ids).aggregate(
        count=Count("id"), first=Min("started_at"), last=Max("finished_at")
    )
    return Window(found["count"], found["first"], found["last"])


def chain_timings(run_id: str) -> list[tuple[float, float]]:
    """(started, finished) epoch seconds of each instance of a chain run, in chain order."""
    rows = TaskInstance.objects.filter(run_id=run_id).values_list(
        "task_id", "started_at", "finished_at"
    )
    return [(started.timestamp(), finished.timestamp()) for _, started, finished in sorted(rows)]


def timeout_for(tasks: int, per_task: float = 0.1, floor: float = 120) -> float:
    """A generous bound for `tasks` tasks to finish, so a stuck run fails rather than hangs."""
    return max(floor, tasks * per_task)
