"""Scale-out: throughput with 1, 2 and 4 worker processes, and where the CPU went.

Each point is measured as in bench/throughput.py (100-task fan-out runs vs raw no-op
tasks, everything enqueued before one `celery worker -c N` starts), while the CPU time
of PostgreSQL, Redis, the workers and the bench is read from /proc.
"""

from __future__ import annotations

from . import cpu
from .context import Context
from .stats import BenchResult
from .throughput import fan_out_dags, flowforge_rate, raw_rate

NAME = "scale_out"
TITLE = "Scale-out"
WIDTH = 100
CPU_GROUPS = ("machine", "postgres", "workers", "redis")


def run(ctx: Context) -> BenchResult:
    total, procs = ctx.sizes.scale_tasks, ctx.sizes.scale_procs
    runs = max(1, total // WIDTH)
    result = BenchResult(
        NAME,
        TITLE,
        f"{runs * WIDTH:,} task instances ({runs} runs × {WIDTH}-task fan-out) vs as many raw "
        f"no-op tasks, drained by one `celery worker -c N` for N in {procs}; tasks/s as in "
        "`throughput`; cores = average CPU cores busy while draining (/proc; postgres counts "
        "every database on the server, so other sessions' tests too).",
    )
    dag = fan_out_dags((WIDTH,))[WIDTH]
    database: dict[int, list] = {}
    for repetition in range(ctx.repeat):
        for count in procs:
            base = raw_rate(ctx, runs * WIDTH, count)
            ff = flowforge_rate(ctx, dag, runs, count)
            ctx.log(f"scale_out #{repetition + 1} -c {count}: {ff} vs raw {base}")
            result.figure(f"-c {count}: tasks/s", "tasks/s", "raw Celery").add(
                ff.per_second, base.per_second
            )
            for group in CPU_GROUPS:
                figure = result.figure(f"-c {count}: {group} CPU", "cores", "raw Celery", False)
                figure.add(ff.cores[group], base.cores[group])
            database.setdefault(count, []).append(ff.database)
            result.details.setdefault(f"cores -c {count}", []).append(
                {"flowforge": ff.cores, "raw": base.cores}
            )
    result.details["flowforge_database_per_task"] = database
    for count in procs:
        last = result.details[f"cores -c {count}"][-1]["flowforge"]
        per_task = database[count][-1]
        result.notes.append(
            f"-c {count}, FlowForge: {cpu.busiest(last)}; per task: {per_task['sessions']} "
            f"PostgreSQL sessions opened, {per_task['commits']} commits"
        )
    return result
