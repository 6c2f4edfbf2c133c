"""FlowForge's Prometheus counters and histograms (CONTRACT section 11), counted in the
process where the work happens: the completion handler and the reconciler in workers, a
trigger or a cancel wherever it runs.

Counting takes no database round trip: each function counts what its caller already
knows, once the caller's transaction commits (a rolled-back finish counts nothing, and a
finish tried again after a lost commit counts once). A counting error is logged, never
raised into the engine.

With PROMETHEUS_MULTIPROC_DIR set (flowforge/__init__.py) each process writes its values
to files of its own in that directory, and a scrape sums them (flowforge/metrics.py, or
a worker's own endpoint, workflows/metrics_server.py). The gauges are not here: they are
read at scrape time (flowforge/metrics.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from django.db import transaction
from prometheus_client import Counter, Histogram, multiprocess, values
from prometheus_client.metrics_core import Metric

from .enums import RunState

log = logging.getLogger(__name__)

PREFIX = "flowforge_"  # of every metric here (CONTRACT section 11)

# Few buckets: every one is a series per DAG, in every process's file, that each scrape
# sums (flowforge/metrics.py); the scrape's cost grows with their number.
# Seconds: from a no-op task to the CONTRACT's default timeout of an hour.
DURATION_BUCKETS = (0.05, 0.25, 1, 5, 30, 120, 600, 1800, 3600)
# Seconds: a hop on an idle engine is milliseconds; a backlog, minutes.
QUEUE_WAIT_BUCKETS = (0.01, 0.05, 0.25, 1, 5, 30, 120, 600)

TASKS_ENQUEUED = Counter(
    "flowforge_tasks_enqueued_total",
    "Task attempts queued to run: a root or a released task, a retry, a repaired task",
    ["dag_id"],
)
TASKS_SUCCEEDED = Counter(
    "flowforge_tasks_succeeded_total", "Task attempts that succeeded", ["dag_id"]
)
TASKS_FAILED = Counter(
    "flowforge_tasks_failed_total", "Task instances failed out of retries", ["dag_id"]
)
TASKS_RETRIED = Counter(
    "flowforge_tasks_retried_total", "Failed task attempts that get another try", ["dag_id"]
)
TASKS_DEAD_LETTERED = Counter(
    "flowforge_tasks_dead_lettered_total", "Task instances put in the dead-letter queue", ["dag_id"]
)
RUNS_STARTED = Counter(
    "flowforge_runs_started_total", "Runs started (queued -> running)", ["dag_id"]
)
RUNS_FINISHED = Counter(
    "flowforge_runs_finished_total", "Runs that ended, by final state", ["dag_id", "state"]
)
REPAIRS = Counter(
    "flowforge_reconciler_repairs_total", "Repairs made by the reconciler, by kind", ["kind"]
)
TASK_DURATION = Histogram(
    "flowforge_task_duration_seconds",
    "Task attempt duration, claim to finish (one observation per attempt)",
    ["dag_id"],
    buckets=DURATION_BUCKETS,
)
QUEUE_WAIT = Histogram(
    "flowforge_task_queue_wait_seconds",
    "Task attempt wait, queued to started (one observation per attempt started by a message)",
    ["dag_id"],
    buckets=QUEUE_WAIT_BUCKETS,
)

DAG_COUNTERS = (
    TASKS_ENQUEUED,
    TASKS_SUCCEEDED,
    TASKS_FAILED,
    TASKS_RETRIED,
    TASKS_DEAD_LETTERED,
    RUNS_STARTED,
)
_DAGS_AT_ZERO: set[str] = set()

ALIVE_SUFFIX = ".alive"
OUTCOMES = {"success": TASKS_SUCCEEDED, "up_for_retry": TASKS_RETRIED, "failed": TASKS_FAILED}

# Jobs and inline workflows get a DAG each, named by runs/adhoc.py: one label for all of
# them keeps the number of series (and of multiprocess file entries) bounded.
_ADHOC_DAG = re.compile(r"(job|workflow)-[0-9a-f]{16}")


def dag_label(dag_id: str) -> str:
    """The dag_id label of a DAG: its id, or `job` / `workflow` for ad-hoc ones."""
    adhoc = _ADHOC_DAG.fullmatch(dag_id)
    return adhoc.group(1) if adhoc else dag_id


def _series_at_zero(label: str) -> None:
    """Every series of a DAG, at 0 until it moves, from its first run or enqueue in this
    process on: a query or an alert on a counter that has not moved yet (no retry so far)
    then sees 0, not nothing. Once per DAG and process."""
    if label in _DAGS_AT_ZERO:
        return
    for metric in (*DAG_COUNTERS, TASK_DURATION, QUEUE_WAIT):
        metric.labels(label)
    for state in sorted(RunState.FINAL):
        RUNS_FINISHED.labels(label, state)
    _DAGS_AT_ZERO.add(label)


def tasks_enqueued(dag_id: str, count: int) -> None:
    def count_them() -> None:
        label = dag_label(dag_id)
        _series_at_zero(label)
        TASKS_ENQUEUED.labels(label).inc(count)

    if count:
        _on_commit(count_them)


def attempt_ended(
    dag_id: str, outcome: str, started_at: datetime, queued_at: float | None = None
) -> None:
    """An attempt's finish moved its instance to `outcome` (success, up_for_retry,
    failed): counted, with its duration (from `started_at` to now) and, when the caller
    knows when it was queued (`queued_at`, a Unix time), its wait in the queue."""
    ended = time.time()
    started = started_at.timestamp()

    def count() -> None:
        label = dag_label(dag_id)
        OUTCOMES[outcome].labels(label).inc()
        TASK_DURATION.labels(label).observe(max(ended - started, 0.0))
        if queued_at is not None:
            # Clocks of two hosts, or a delayed message delivered a moment early: never < 0.
            QUEUE_WAIT.labels(label).observe(max(started - queued_at, 0.0))

    _on_commit(count)


def task_dead_lettered(dag_id: str) -> None:
    _on_commit(lambda: TASKS_DEAD_LETTERED.labels(dag_label(dag_id)).inc())


def run_started(dag_id: str) -> None:
    def count() -> None:
        label = dag_label(dag_id)
        _series_at_zero(label)
        RUNS_STARTED.labels(label).inc()

    _on_commit(count)


def run_finished(dag_id: str, state: str) -> None:
    _on_commit(lambda: RUNS_FINISHED.labels(dag_label(dag_id), state).inc())


def repairs_made(kind: str, count: int) -> None:
    """`count` repairs of `kind` by a reconciler pass; 0 too, so that every kind's series
    is there (at 0) from the first pass on."""
    _on_commit(lambda: REPAIRS.labels(kind).inc(count))


def _on_commit(count: Callable[[], None]) -> None:
    # robust: an error while counting (a full disk under the multiprocess directory) is
    # logged by Django and never reaches the finish that committed.
    transaction.on_commit(count, robust=True)


def multiprocess_dir() -> Path | None:
    """The directory every process of this host counts into, or None (one process)."""
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None


class FilesCollector:
    """FlowForge's own metrics (named `flowforge_*`) summed from the multiprocess files
    in `directory`.

    Any program that imports FlowForge counts into the directory, Flower
    (`celery -A flowforge flower`) with its `flower_*` metrics among them. Flower serves
    those itself and Prometheus scrapes it there; summed in here as well, they would be
    counted twice.
    """

    def __init__(self, directory: Path) -> None:
        self._files = multiprocess.MultiProcessCollector(None, path=str(directory))

    def collect(self) -> Iterator[Metric]:
        return (family for family in self._files.collect() if family.name.startswith(PREFIX))


def prepare_multiprocess_dir() -> None:
    """Make the directory, empty it of what processes that are all gone left, and mark
    this process as one that uses it.

    The rule: a process that starts (the web's, a worker's main process) removes the
    files of exited processes only when no process that uses the directory is alive,
    none that counted into it and none that serves it (each marks itself with a
    `process_<pid>.alive` file here): the host's processes start afresh, and the counters
    restart from zero as any restarted exporter's do. While any of them lives, no count
    is removed: the counts of processes that exited stay in the sums, so no counter goes
    backwards on a scrape. Process ids are this host's: the directory is never shared
    across hosts or containers.
    """
    directory = multiprocess_dir()
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    others = [
        (path, _user_pid(path))
        for path in [*directory.glob("*.db"), *directory.glob(f"*{ALIVE_SUFFIX}")]
        if _user_pid(path) != os.getpid()
    ]
    alive = {path for path, pid in others if pid is None or _alive(pid)}
    gone = [path for path, _ in others if path not in alive]
    if alive:  # keep every count; only the marks of exited processes go
        gone = [path for path in gone if path.suffix == ALIVE_SUFFIX]
    for path in gone:
        with contextlib.suppress(FileNotFoundError):  # another starting process was first
            path.unlink()
    if not alive and any(path.suffix == ".db" for path in gone):
        log.info("metrics: the counts of exited processes removed from %s", directory)
    (directory / f"process_{os.getpid()}{ALIVE_SUFFIX}").touch()


def _user_pid(path: Path) -> int | None:
    """The process id in a file name: prometheus_client's (counter_1234.db,
    gauge_livesum_1234.db) or a mark (process_1234.alive)."""
    tail = path.stem.rpartition("_")[2]
    return int(tail) if tail.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _make_multiprocess_dir() -> None:
    """Before the first count (prometheus_client opens its files there lazily). A
    directory that cannot be made leaves this process counting for itself only."""
    directory = multiprocess_dir()
    if directory is None:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning(
            "metrics: cannot use PROMETHEUS_MULTIPROC_DIR=%s (%s); this process's counts "
            "reach no scrape. Set it to a directory every FlowForge process of the host "
            "can write",
            directory,
            exc,
        )
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        values.ValueClass = values.get_value_class()


_make_multiprocess_dir()
