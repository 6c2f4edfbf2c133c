"""What every benchmark is given: the bench's services, the sizes to run, how often."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, fields

from .services import BenchEnv


@dataclass
class Sizes:
    """Workload sizes; the defaults are the issue's, --quick shrinks them."""

    chain: int = 200  # tasks in a chain
    tasks: int = 10_000  # task instances per throughput workload
    widths: tuple[int, ...] = (100, 1000)  # fan-out widths of the throughput workloads
    flat_big: int = 10_000  # tasks of the big DAG (flat cost)
    flat_small: int = 10  # tasks of the small DAG (flat cost)
    flat_samples: int = 500  # small-DAG tasks timed per repetition (flat cost)
    db_width: int = 1000  # fan-out width whose queries are counted
    api_requests: int = 2000  # requests per API figure
    concurrency: int = 50  # HTTP clients at once
    scale_tasks: int = 3000  # task instances per scale-out point
    scale_procs: tuple[int, ...] = (1, 2, 4)  # worker processes per scale-out point
    jobs: int = 1000  # jobs of the load test
    job_workers: int = 2  # worker processes of the load test (celery worker -c 1 each)
    page_tasks: int = 1000  # tasks of the DAG whose dashboard pages are timed
    page_runs: int = 100_000  # runs stored when the run list is timed
    metrics_instances: int = 1_000_000  # task instances stored when /metrics is timed

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            chain=50,
            tasks=2000,
            flat_big=2000,
            flat_samples=200,
            db_width=200,
            api_requests=300,
            scale_tasks=1000,
            jobs=200,
            page_tasks=100,
            page_runs=2000,
            metrics_instances=20_000,
        )

    def as_dict(self) -> dict:
        return {item.name: getattr(self, item.name) for item in fields(self)}


@dataclass
class Context:
    env: BenchEnv
    sizes: Sizes
    repeat: int
    started: float = field(default_factory=time.monotonic)

    def log(self, message: str) -> None:
        print(f"[bench {time.monotonic() - self.started:7.1f}s] {message}", file=sys.stderr)
