"""Throughput: no-op task instances per second through fan-out runs, against raw Celery
tasks on the same worker settings.

Everything is enqueued before the worker starts (FlowForge: all runs triggered in one
transaction, so their root messages wait together; raw: every message published), then
one `celery worker -c N` drains it. Tasks/s = instances / (last finish - first start),
from the database for FlowForge and from the tasks' own Redis records for raw Celery.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import cpu, pgstats, raw, workloads
from .context import Context
from .processes import Worker, running
from .raw_tasks import RAW_NOOP, RAW_TWO_COMMITS
from .stats import BenchResult

NAME = "throughput"
TITLE = "Throughput"
CONCURRENCY = 2
# Not FlowForge: the floor of any engine that commits a claim and a finish to PostgreSQL.
FLOOR_LABEL = "raw Celery task + 2 PostgreSQL commits (floor)"


@dataclass(frozen=True)
class Measured:
    tasks: int
    per_second: float
    cores: dict[str, float]
    database: dict[str, float]  # the bench database's sessions, commits, active ms per task


def _drain(ctx: Context, concurrency: int, wait) -> tuple[dict, dict]:
    """Start a worker, let `wait(worker)` return when the work is done, stop the worker;
    the cores each group used meanwhile, and the database's activity (read after the
    worker stopped, so that its sessions' statistics are in)."""
    database = pgstats.activity()
    worker = Worker(ctx.env, concurrency).start()
    with running(worker):
        _, cores = cpu.measured({"workers": worker.pids}, lambda: wait(worker))
    return cores, {"before": database, "after": pgstats.activity()}


def flowforge_rate(ctx: Context, dag, runs: int, concurrency: int) -> Measured:
    run_ids = workloads.trigger_batch(dag, runs)
    total = workloads.task_window(run_ids).count
    timeout = workloads.timeout_for(total, per_task=0.1 / concurrency)

    def wait(worker: Worker) -> None:
        workloads.wait_runs(run_ids, timeout, check=worker.check_alive)

    cores, database = _drain(ctx, concurrency, wait)
    if failed := workloads.failed_runs(run_ids):
        raise RuntimeError(f"{failed} of {runs} throughput runs did not succeed")
    window = workloads.task_window(run_ids)
    activity = pgstats.per_task(database["before"], database["after"], window.count)
    return Measured(window.count, window.per_second, cores, activity)


def raw_rate(ctx: Context, count: int, concurrency: int, task: str = RAW_NOOP) -> Measured:
    key = raw.new_key("batch")
    if task == RAW_TWO_COMMITS:
        raw.prepare_floor_table(count)
    raw.publish_batch(ctx.env, key, count, task)
    timeout = workloads.timeout_for(count, per_task=0.05 / concurrency)

    def wait(worker: Worker) -> None:
        raw.wait_recorded(ctx.env, key, count, timeout, check=worker.check_alive)

    cores, database = _drain(ctx, concurrency, wait)
    rows = raw.recorded(ctx.env, key)
    seconds = max(row[2] for row in rows) - min(row[1] for row in rows)
    activity = pgstats.per_task(database["before"], database["after"], len(rows))
    return Measured(len(rows), len(rows) / seconds, cores, activity)


def fan_out_dags(widths: tuple[int, ...]) -> dict:
    return {
        width: workloads.submit(workloads.fan_out_spec(f"bench-fan-out-{width}", width))
        for width in widths
    }


def run(ctx: Context) -> BenchResult:
    total, widths = ctx.sizes.tasks, ctx.sizes.widths
    result = BenchResult(
        NAME,
        TITLE,
        f"{total:,} no-op task instances per workload: FlowForge as {total:,}/width runs of "
        f"a fan-out (a root, then width-1 tasks that depend on it) for widths "
        f"{', '.join(map(str, widths))}; raw Celery as {total:,} independent no-op tasks. "
        f"Enqueued first, then drained by one `celery worker -c {CONCURRENCY}` (2 processes, "
        "acks_late, prefetch 1); tasks/s = instances / (last finish - first start). "
        f"The row '{FLOOR_LABEL}' is not FlowForge: raw Celery tasks that each also commit "
        "two one-row UPDATEs to PostgreSQL over a kept connection, the least an engine "
        "that records a claim and a finish per task can do.",
    )
    dags = fan_out_dags(widths)
    cores_seen: dict[str, list] = {}
    for repetition in range(ctx.repeat):
        base = raw_rate(ctx, total, CONCURRENCY)
        cores_seen.setdefault("raw", []).append(base.cores)
        floor = raw_rate(ctx, total, CONCURRENCY, RAW_TWO_COMMITS)
        cores_seen.setdefault("raw + 2 commits", []).append(floor.cores)
        ctx.log(f"throughput #{repetition + 1} raw + 2 commits: {floor}")
        result.figure(FLOOR_LABEL, "tasks/s", "raw Celery").add(floor.per_second, base.per_second)
        for width in widths:
            runs = max(1, total // width)
            ff = flowforge_rate(ctx, dags[width], runs, CONCURRENCY)
            cores_seen.setdefault(f"fan-out {width}", []).append(ff.cores)
            result.details.setdefault(f"database per task, fan-out {width}", []).append(ff.database)
            ctx.log(f"throughput #{repetition + 1} width {width}: {ff} vs raw {base}")
            label = f"{runs} runs × {width}-task fan-out"
            result.figure(label, "tasks/s", "raw Celery").add(ff.per_second, base.per_second)
    result.details["cores_used"] = cores_seen
    result.notes += [f"CPU {name}: {cpu.busiest(seen[-1])}" for name, seen in cores_seen.items()]
    result.notes += [
        f"{key}: {value[-1]} (sessions = PostgreSQL connections opened; active = ms the "
        "server spent executing, waiting for CPU included)"
        for key, value in result.details.items()
        if key.startswith("database per task")
    ]
    return result
