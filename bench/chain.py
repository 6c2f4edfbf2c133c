"""Chain latency: a chain of no-op python tasks, link by link, against a raw Celery chain.

FlowForge: a DAG where each task depends on the one before; the database's started_at and
finished_at of each instance give the time per link and the gaps between one task's end
and the next one's start. Raw Celery: celery.chain of bench.raw_noop on the same worker,
timed by the tasks themselves (Redis list).
"""

from __future__ import annotations

from dataclasses import dataclass

from runs.services import trigger_run

from . import raw, workloads
from .context import Context
from .processes import Worker, running
from .stats import BenchResult, percentile

NAME = "chain"
TITLE = "Chain latency"
WARM_UP_LENGTH = 5


@dataclass(frozen=True)
class ChainTiming:
    per_link_ms: float
    gap_p50_ms: float
    gap_p99_ms: float


def timing(spans: list[tuple[float, float]]) -> ChainTiming:
    """From (started, finished) of each link in order: time per link, and the gaps between
    a link's end and the next one's start."""
    per_link = (spans[-1][1] - spans[0][0]) / len(spans)
    gaps = [after[0] - before[1] for before, after in zip(spans, spans[1:], strict=False)]
    gaps = gaps or [0.0]
    return ChainTiming(per_link * 1e3, percentile(gaps, 0.5) * 1e3, percentile(gaps, 0.99) * 1e3)


def flowforge_chain(dag, length: int, worker: Worker) -> ChainTiming:
    run_id = str(trigger_run(dag, triggered_by="bench").id)
    workloads.wait_runs([run_id], workloads.timeout_for(length), check=worker.check_alive)
    if workloads.failed_runs([run_id]):
        raise RuntimeError(f"chain run {run_id} did not succeed:\n{worker.tail()}")
    return timing(workloads.chain_timings(run_id))


def raw_chain(ctx: Context, length: int, worker: Worker) -> ChainTiming:
    key = raw.new_key("chain")
    raw.start_chain(ctx.env, key, length)
    raw.wait_recorded(ctx.env, key, length, workloads.timeout_for(length), worker.check_alive)
    return timing([(started, finished) for _, started, finished in raw.recorded(ctx.env, key)])


def run(ctx: Context) -> BenchResult:
    length = ctx.sizes.chain
    result = BenchResult(
        NAME,
        TITLE,
        f"a chain of {length} no-op python-callable tasks (bench.tasks:noop) vs a raw "
        f"celery.chain of {length} no-op tasks; one `celery worker -c 2` serves both, "
        "alternately; per link = (last finish - first start) / links; gap = a task's "
        "start - its upstream's finish (FlowForge: database timestamps; raw: time.time() "
        "recorded by the task)",
    )
    dag = workloads.submit(workloads.chain_spec(f"bench-chain-{length}", length))
    warm_up = workloads.submit(workloads.chain_spec("bench-chain-warm-up", WARM_UP_LENGTH))
    with running(Worker(ctx.env, concurrency=2).start()) as (worker,):
        flowforge_chain(warm_up, WARM_UP_LENGTH, worker)
        raw_chain(ctx, WARM_UP_LENGTH, worker)
        for repetition in range(ctx.repeat):
            ff, base = flowforge_chain(dag, length, worker), raw_chain(ctx, length, worker)
            ctx.log(f"chain #{repetition + 1}: {ff} vs raw {base}")
            label = "raw Celery chain"
            result.figure("time per link", "ms", label).add(ff.per_link_ms, base.per_link_ms)
            result.figure("gap p50", "ms", label).add(ff.gap_p50_ms, base.gap_p50_ms)
            result.figure("gap p99", "ms", label).add(ff.gap_p99_ms, base.gap_p99_ms)
    return result
