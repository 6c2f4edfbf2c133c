"""The queries behind the operations pages (/dlq/, /workers/, /status/): what the API's
/api/v1/dlq, /api/v1/workers and /api/v1/status read, plus the last hour's figures.
Each page costs a fixed number of queries, whatever the number of rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import (
    Avg,
    Count,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
)
from django.utils import timezone

from runs.api.views import DeadLetterList
from runs.models import TaskAttempt, TaskInstance, WorkerHeartbeat
from runs.states import TaskState
from runs.status import alive_workers, system_status

DEAD_LETTERS_PER_PAGE = 50
WORKERS_PER_PAGE = 100


@dataclass(frozen=True)
class DeadLetterFilter:
    """A choice of the dead-letter page's ?shown=<key>."""

    key: str
    label: str
    condition: Q


# The first is the default.
DEAD_LETTER_FILTERS = (
    DeadLetterFilter("open", "Not yet retried", Q(retried_at=None)),
    DeadLetterFilter("retried", "Retried", Q(retried_at__isnull=False)),
    DeadLetterFilter("all", "All", Q()),
)
# An attempt's row takes its instance's state at the finish: up_for_retry is an attempt
# that failed with tries left, failed one that failed with none (or timed out).
FAILED_ATTEMPT_STATES = (TaskState.FAILED, TaskState.UP_FOR_RETRY)
WINDOW = timedelta(hours=1)


def dead_letter_filter(asked: str | None) -> DeadLetterFilter:
    """The filter `?shown=` names; an unknown or missing one is the default."""
    return next((f for f in DEAD_LETTER_FILTERS if f.key == asked), DEAD_LETTER_FILTERS[0])


def dead_letter_page(shown: DeadLetterFilter, page_number: str | None) -> Page:
    """One page (DEAD_LETTERS_PER_PAGE entries) of the dead letters `shown` keeps, newest
    first as /api/v1/dlq lists them. Two queries: the count and the page's rows."""
    entries = DeadLetterList.queryset.filter(shown.condition)
    return Paginator(entries, DEAD_LETTERS_PER_PAGE).get_page(page_number)


@dataclass(frozen=True)
class RunningTask:
    """A task instance a worker reports running; `run_id` None when it no longer exists."""

    instance_id: int
    run_id: Any = None
    task_id: str = ""


@dataclass
class WorkerRow:
    """One worker as the workers page shows it."""

    heartbeat: WorkerHeartbeat
    alive: bool
    running: list[RunningTask] = field(default_factory=list)


def workers_page(page_number: str | None) -> tuple[Page, list[WorkerRow]]:
    """A page of workers seen by heartbeat, alive ones first (the API's rule, via
    runs.status.alive_workers), then by hostname, with their running tasks resolved.
    Three queries: count, heartbeats, the task instances of all of them."""
    alive = Exists(alive_workers().filter(pk=OuterRef("pk")))
    heartbeats = WorkerHeartbeat.objects.annotate(alive=alive).order_by("-alive", "hostname")
    page = Paginator(heartbeats, WORKERS_PER_PAGE).get_page(page_number)
    tasks = running_tasks({pk for beat in page for pk in _instance_ids(beat.running)})
    rows = [
        WorkerRow(
            beat,
            beat.alive,
            [tasks.get(pk, RunningTask(pk)) for pk in _instance_ids(beat.running)],
        )
        for beat in page
    ]
    return page, rows


def running_tasks(instance_ids: set[int]) -> dict[int, RunningTask]:
    """Task instance id -> its run and task id, in one query."""
    if not instance_ids:
        return {}
    found = TaskInstance.objects.filter(pk__in=instance_ids).values_list("pk", "run_id", "task_id")
    return {pk: RunningTask(pk, run_id, task_id) for pk, run_id, task_id in found}


def _instance_ids(running: object) -> list[int]:
    """The ids of a heartbeat's `running` list (JSON written by the worker: ints)."""
    if not isinstance(running, list):
        return []
    return [pk for pk in running if isinstance(pk, int) and not isinstance(pk, bool)]


@dataclass(frozen=True)
class LastHour:
    """Attempts that finished in the hour up to `until`.

    `failure_rate` is failed / finished (0..1) and `mean_duration` seconds, both None
    when no attempt finished; `per_minute` is finished attempts per minute.
    """

    since: datetime
    until: datetime
    finished: int
    failed: int
    failure_rate: float | None
    mean_duration: float | None
    per_minute: float


def last_hour(now: datetime | None = None) -> LastHour:
    """The last hour's attempt figures, all from one aggregate query over
    `finished_at >= now - 1h` (a range an index on finished_at serves)."""
    until = now or timezone.now()
    since = until - WINDOW
    duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    figures = TaskAttempt.objects.filter(finished_at__gte=since, finished_at__lte=until).aggregate(
        finished=Count("id"),
        failed=Count("id", filter=Q(state__in=FAILED_ATTEMPT_STATES)),
        mean_duration=Avg(duration, filter=Q(started_at__isnull=False)),
    )
    finished, failed = figures["finished"], figures["failed"]
    mean: timedelta | None = figures["mean_duration"]
    return LastHour(
        since=since,
        until=until,
        finished=finished,
        failed=failed,
        failure_rate=failed / finished if finished else None,
        mean_duration=mean.total_seconds() if mean is not None else None,
        per_minute=finished / (WINDOW.total_seconds() / 60),
    )


@dataclass(frozen=True)
class StatusPage:
    """What /status/ shows: /api/v1/status's dict (runs.status.system_status: `runs` and
    `tasks` state -> count, `queues` name -> depth or {"error": ...}, `workers_alive`,
    `dags`, `dead_letters`) and the last hour's figures."""

    system: Mapping[str, Any]
    last_hour: LastHour

    @property
    def queue_error(self) -> str:
        """The broker's failure when queue depths could not be read, else ''."""
        return str(self.system["queues"].get("error", ""))


def status_page(now: datetime | None = None) -> StatusPage:
    """Everything /status/ shows, as the API computes it."""
    return StatusPage(system=system_status(), last_hour=last_hour(now))
