"""/metrics (CONTRACT section 11), Prometheus text: the counters and histograms every
FlowForge process of this host counted (runs/telemetry.py, summed from
PROMETHEUS_MULTIPROC_DIR), and the gauges, read when scraped without counting a whole
table:

- unfinished states (runs queued and running; task instances pending, queued, running,
  up_for_retry), dead letters not retried and workers alive: counts over partial or
  leading-column indexes, all in one statement, so they cost what is in flight, not
  what is stored;
- finished states (success, failed, ...): a snapshot at most REFRESH_SECS old, taken by
  a background thread of this process (a GROUP BY over whole tables), never by the
  scrape itself; a process's first scrape has none yet;
- queue depths: asked of the broker, for the queues the snapshot found DAGs naming.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from functools import cache

from django.db import connection
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from runs import telemetry

log = logging.getLogger(__name__)

REFRESH_SECS = 30  # the finished-state counts are at most this old (plus one refresh)
BROKER_TIMEOUT_SECS = 0.5  # a scrape gives up on the queue depths after this long
BROKER_QUIET_SECS = 10  # after a broker failure, scrapes leave the broker alone this long
DEFAULT_QUEUES = ("default", "dead_letter")


@dataclass(frozen=True)
class Snapshot:
    """What a scrape would have to scan whole tables for, counted off the scrape path."""

    runs: dict[str, int]  # finished run states -> count
    tasks: dict[str, int]  # finished task-instance states -> count
    queues: tuple[str, ...]  # queues that active DAGs name (unprefixed)
    taken: float  # time.monotonic() when counted


_snapshot: Snapshot | None = None
_refreshing = threading.Lock()
_broker_failed_at = float("-inf")


def refresh_snapshot() -> Snapshot:
    """Count the finished states and find the queues now (this thread's connection)."""
    global _snapshot
    from runs.models import DagRun, TaskInstance
    from runs.states import RunState, TaskState
    from runs.status import by_state, known_queues

    runs = by_state(DagRun, RunState.values)
    tasks = by_state(TaskInstance, TaskState.values)
    _snapshot = Snapshot(
        runs={state: n for state, n in runs.items() if state in RunState.FINAL},
        tasks={state: n for state, n in tasks.items() if state in TaskState.FINAL},
        queues=tuple(known_queues()),
        taken=time.monotonic(),
    )
    return _snapshot


def _snapshot_for_scrape() -> Snapshot | None:
    """The last snapshot; a stale or missing one is refreshed in the background."""
    snapshot = _snapshot
    stale = snapshot is None or time.monotonic() - snapshot.taken > REFRESH_SECS
    if stale and _refreshing.acquire(blocking=False):
        threading.Thread(
            target=_refresh_in_background, name="metrics-snapshot", daemon=True
        ).start()
    return snapshot


def _refresh_in_background() -> None:
    try:
        refresh_snapshot()
    except Exception:  # noqa: BLE001 - the next scrape tries again; this one served the last
        log.warning("metrics: counting finished runs and tasks failed", exc_info=True)
    finally:
        connection.close()  # this thread's own
        _refreshing.release()


def live_counts() -> dict[str, int]:
    """Counts of what is in flight, in one statement: `task:<state>` and `run:<state>` for
    the unfinished states, `dead_letters` (not retried) and `workers` (alive). Each is a
    scan of an index holding just those rows (runs/models.py)."""
    from runs.models import DagRun, DeadLetter, TaskInstance
    from runs.states import RunState, TaskState
    from runs.status import alive_workers

    querysets = {
        **{
            f"task:{state}": TaskInstance.objects.filter(state=state)
            for state in TaskState.values
            if state not in TaskState.FINAL
        },
        **{
            f"run:{state}": DagRun.objects.filter(state=state)
            for state in RunState.values
            if state not in RunState.FINAL
        },
        "dead_letters": DeadLetter.objects.filter(retried_at=None),
        "workers": alive_workers(),
    }
    parts, params = [], []
    for queryset in querysets.values():
        sql, part_params = queryset.order_by().values("pk").query.sql_with_params()
        parts.append(f"(SELECT COUNT(*) FROM ({sql}) AS counted)")
        params.extend(part_params)
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(parts), params)
        row = cursor.fetchone()
    return dict(zip(querysets, row, strict=True))


def _queue_depths(queues: tuple[str, ...]) -> dict[str, int | None] | None:
    """Depths from the broker, or None while it is unreachable (then left alone for
    BROKER_QUIET_SECS, so that scrapes stay fast)."""
    global _broker_failed_at
    from runs.messages import queue_depths

    if time.monotonic() - _broker_failed_at < BROKER_QUIET_SECS:
        return None
    try:
        return queue_depths(list(queues), timeout=BROKER_TIMEOUT_SECS)
    except Exception:  # noqa: BLE001 - a broker down leaves out its gauge, not the scrape
        _broker_failed_at = time.monotonic()
        log.warning("metrics: queue depths unavailable (broker unreachable)", exc_info=True)
        return None


def _families() -> dict[str, GaugeMetricFamily]:
    return {
        "runs": GaugeMetricFamily("flowforge_runs", "Runs by state", labels=["state"]),
        "tasks": GaugeMetricFamily(
            "flowforge_task_instances", "Task instances by state", labels=["state"]
        ),
        "dead_letters": GaugeMetricFamily(
            "flowforge_dead_letter_depth", "Dead-letter entries not yet retried"
        ),
        "workers": GaugeMetricFamily("flowforge_workers_alive", "Workers with a recent heartbeat"),
        "queues": GaugeMetricFamily(
            "flowforge_queue_depth", "Messages waiting in each broker queue", labels=["queue"]
        ),
    }


class FlowForgeCollector:
    """The gauges, computed when scraped."""

    def describe(self):
        # Names only: registering must not query the database (it may not exist yet).
        yield from _families().values()

    def collect(self):
        families = _families()
        live = live_counts()
        snapshot = _snapshot_for_scrape()
        for key, value in live.items():
            kind, _, state = key.partition(":")
            if kind in ("run", "task"):
                families[f"{kind}s"].add_metric([state], value)
        if snapshot is not None:
            for state, value in snapshot.runs.items():
                families["runs"].add_metric([state], value)
            for state, value in snapshot.tasks.items():
                families["tasks"].add_metric([state], value)
        families["dead_letters"].add_metric([], live["dead_letters"])
        families["workers"].add_metric([], live["workers"])
        depths = _queue_depths(snapshot.queues if snapshot else DEFAULT_QUEUES)
        for queue, depth in (depths or {}).items():
            if depth is not None:
                families["queues"].add_metric([queue], depth)
        yield from families.values()


@cache
def registry() -> CollectorRegistry:
    """What /metrics serves: in multiprocess mode FlowForge's metrics from the files of
    every process of this host plus the gauges; otherwise this process's own metrics
    plus the gauges. prometheus_client's global REGISTRY is left as it is: another
    program in this process serves it (Flower's /metrics), and the gauges there would
    query the database from its event loop."""
    telemetry.prepare_multiprocess_dir()
    directory = telemetry.multiprocess_dir()
    combined = CollectorRegistry()
    combined.register(REGISTRY if directory is None else telemetry.FilesCollector(directory))
    combined.register(FlowForgeCollector())
    return combined


def register() -> None:
    """At URLconf import: ready the registry (and clean the multiprocess directory when
    every process that wrote into it is gone: runs/telemetry.py)."""
    registry()


def export(request: HttpRequest) -> HttpResponse:
    """GET /metrics."""
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
