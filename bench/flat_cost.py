"""Flat cost: the engine's time per task in a 10,000-task DAG against a 10-task DAG.

Both are fan-outs run in-process (bench/inprocess.py), so the figure is the engine's own
work per task (claim, execute a no-op, complete with latch and run countdown, publish
what it released), free of worker scheduling and parallelism. The small DAG is run
repeatedly until enough of its tasks were timed. Trigger time per instance is reported
too.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from runs.services import trigger_run

from . import inprocess, workloads
from .context import Context
from .stats import BenchResult

NAME = "flat_cost"
TITLE = "Flat cost"


@dataclass
class Timer:
    seconds: list[float] = field(default_factory=list)

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.seconds.append(time.perf_counter() - started)

    def mean_ms(self) -> float:
        return sum(self.seconds) / len(self.seconds) * 1e3


def time_runs(dag, width: int, samples: int) -> tuple[float, float]:
    """(ms per task, ms of trigger per instance) over runs of `dag` until `samples` tasks."""
    tasks, triggers = Timer(), Timer()
    while len(tasks.seconds) < samples:
        with triggers.timing():
            run_id = str(trigger_run(dag, triggered_by="bench").id)
        inprocess.play_worker([run_id], tasks.timing)
        if workloads.failed_runs([run_id]):
            raise RuntimeError(f"flat_cost run {run_id} did not succeed")
    return tasks.mean_ms(), triggers.mean_ms() / width


def run(ctx: Context) -> BenchResult:
    big, small = ctx.sizes.flat_big, ctx.sizes.flat_small
    result = BenchResult(
        NAME,
        TITLE,
        f"mean wall time of run_attempt per task, in-process (the bench plays the worker; "
        f"messages go to a queue nobody consumes), for one {big:,}-task fan-out run vs "
        f"{small}-task fan-out runs repeated until {ctx.sizes.flat_samples} tasks were "
        "timed; the ratio is big ÷ small (target ≤ 1.5).",
    )
    queue = inprocess.nobody_queue()
    big_dag = workloads.submit(workloads.fan_out_spec(f"bench-flat-{big}", big, queue))
    small_dag = workloads.submit(workloads.fan_out_spec(f"bench-flat-{small}", small, queue))
    time_runs(small_dag, small, small)  # warm-up: imports, compiled DAG caches
    for repetition in range(ctx.repeat):
        small_task, small_trigger = time_runs(small_dag, small, ctx.sizes.flat_samples)
        big_task, big_trigger = time_runs(big_dag, big, big)
        inprocess.purge(ctx.env, queue)
        ctx.log(f"flat_cost #{repetition + 1}: {big_task:.2f} vs {small_task:.2f} ms/task")
        label = f"{small}-task DAG"
        result.figure(f"engine time per task, {big:,}-task DAG", "ms", label).add(
            big_task, small_task
        )
        result.figure(f"trigger time per instance, {big:,}-task DAG", "ms", label).add(
            big_trigger, small_trigger
        )
    return result
