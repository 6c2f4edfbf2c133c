"""Slot bookkeeping cost: the 1,000-task fan-out with `max_active_tasks` set high enough
never to bind, against the same DAG without it, alternately in one run (issue 15: at most
10% slower). With the limit, every claim takes a slot of the run and every finish gives
it back and looks for a waiting task to wake."""

from __future__ import annotations

from .context import Context
from .stats import BenchResult
from .throughput import CONCURRENCY, flowforge_rate
from .workloads import fan_out_spec, submit

NAME = "slot_cost"
TITLE = "Slot bookkeeping (max_active_tasks not binding)"
WIDTH = 1000
NOT_BINDING = 1_000_000


def run(ctx: Context) -> BenchResult:
    total = ctx.sizes.tasks
    width = min(WIDTH, total)  # smaller only at smoke-test sizes
    runs = max(1, total // width)
    result = BenchResult(
        NAME,
        TITLE,
        f"{runs} runs of a {width}-task fan-out, drained by one `celery worker "
        f"-c {CONCURRENCY}` as in `throughput`: the DAG with `max_active_tasks: "
        f"{NOT_BINDING:,}` (slots taken and given back, never full) against the same DAG "
        "without it, one after the other in each repetition.",
    )
    plain = submit(fan_out_spec("bench-slots-plain", width))
    limited = submit(
        {**fan_out_spec("bench-slots-limited", width), "max_active_tasks": NOT_BINDING}
    )
    for repetition in range(ctx.repeat):
        without = flowforge_rate(ctx, plain, runs, CONCURRENCY)
        with_slots = flowforge_rate(ctx, limited, runs, CONCURRENCY)
        ctx.log(f"slot cost #{repetition + 1}: with {with_slots} vs without {without}")
        result.figure(
            f"{runs} runs × {width}-task fan-out, max_active_tasks set", "tasks/s", "without it"
        ).add(with_slots.per_second, without.per_second)
    return result
