"""The scheduler: which cron ticks get runs (CONTRACT section 7).

Beat sends `flowforge.schedule` every FLOWFORGE_SCHEDULE_SECS; each pass creates the runs
of the DAGs whose `next_run_at` has come and moves `next_run_at` on. Ticks come from the
one cron engine (dags/cron.py). Exactly one run per tick, with any number of beats and
across restarts: a pass takes each due DAG's row with SKIP LOCKED (a second pass leaves it
to the first), and the unique (DAG, logical date) constraint refuses a second run of a
tick whatever happens.

Backfill creates the runs of the ticks in a window, with the same constraint.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time
from itertools import islice
from zoneinfo import ZoneInfo

from django.db import transaction
from django.utils import timezone

from dags.cron import CronSchedule
from dags.dag_spec import DagSpec
from dags.models import Dag

from . import services
from .models import DagRun
from .states import RunState

log = logging.getLogger(__name__)

# DAGs per pass, and ticks per DAG and pass: a long catchup is worked off over passes.
DAG_BATCH = 100
CATCHUP_BATCH = 500
MAX_BACKFILL_TICKS = 10_000


@dataclass
class SchedulePass:
    """What one pass did: runs created, ticks skipped (`concurrency_policy: forbid`, or
    the tick already had its run), runs cancelled by `concurrency_policy: replace`."""

    created: int = 0
    skipped: int = 0
    replaced: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def schedule_due(now: datetime | None = None) -> SchedulePass:
    """Create the runs of every due tick of active, unpaused DAGs, as of `now`."""
    now = now or timezone.now()
    done = SchedulePass()
    due = (
        Dag.objects.filter(is_active=True, is_paused=False, next_run_at__lte=now)
        .order_by("next_run_at")
        .values_list("pk", flat=True)
    )
    for pk in list(due[:DAG_BATCH]):
        with transaction.atomic():
            dag = (
                Dag.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("current_version")
                .filter(pk=pk, is_active=True, is_paused=False, next_run_at__lte=now)
                .first()
            )
            if dag is not None:  # else another pass has it, or it changed meanwhile
                _schedule(dag, now, done)
    if done.created or done.skipped or done.replaced:
        log.info("scheduler: %s", done.as_dict())
    return done


def _schedule(dag: Dag, now: datetime, done: SchedulePass) -> None:
    """The due ticks of one DAG, whose row the caller holds: with catchup all of them,
    oldest first; without, the latest only. Then `next_run_at` moves past them."""
    spec = dag.dag_spec
    schedule = spec.cron_schedule() if spec else None
    if spec is None or schedule is None or dag.next_run_at is None:
        _move_on(dag, None)
        return
    until = min(now, spec.end) if spec.end else now
    if spec.catchup:
        ticks = list(islice(schedule.ticks_between(dag.next_run_at, until), CATCHUP_BATCH))
    else:
        latest = schedule.latest_at_or_before(until, since=dag.next_run_at)
        ticks = [latest] if latest else []
    full = spec.catchup and len(ticks) == CATCHUP_BATCH
    # The latest due tick is the one falling due now; older ones are catchup runs, which
    # concurrency_policy leaves alone (CONTRACT section 7).
    due_now = ticks[-1] if ticks and not full else None
    for tick in ticks:
        if tick == due_now and not _policy_allows(dag, spec, tick, done):
            continue
        if services.trigger_tick(dag, tick, triggered_by="schedule"):
            done.created += 1
        else:
            done.skipped += 1
    _move_on(dag, _next_tick(schedule, spec, ticks[-1] if full else now))


def _policy_allows(dag: Dag, spec: DagSpec, tick: datetime, done: SchedulePass) -> bool:
    """concurrency_policy, for a tick that falls due while an earlier run of the DAG, of
    any kind, is unfinished: allow (it waits under max_active_runs), forbid (the tick is
    skipped) or replace (the unfinished runs are cancelled first)."""
    if spec.concurrency_policy == "allow":
        return True
    unfinished = list(DagRun.objects.filter(dag=dag, state__in=[RunState.QUEUED, RunState.RUNNING]))
    if not unfinished:
        return True
    if spec.concurrency_policy == "forbid":
        log.info(
            "scheduler: %s tick %s skipped: run %s is unfinished (concurrency_policy: forbid)",
            dag.dag_id,
            tick.isoformat(),
            unfinished[0].id,
        )
        done.skipped += 1
        return False
    for run in unfinished:
        try:
            services.cancel_run(run)
            done.replaced += 1
        except services.RunFinished:
            pass  # it ended meanwhile: nothing left to replace
    return True


def _next_tick(schedule: CronSchedule, spec: DagSpec, after: datetime) -> datetime | None:
    tick = schedule.next_after(after)
    return None if spec.end is not None and tick > spec.end else tick


def _move_on(dag: Dag, next_run_at: datetime | None) -> None:
    dag.next_run_at = next_run_at
    Dag.objects.filter(pk=dag.pk).update(next_run_at=next_run_at)


class BackfillError(ValueError):
    """A backfill window that cannot be run; the message names the problem."""


def window_edge(value: str, zone: str, key: str) -> datetime:
    """`start` or `end` of a backfill window: an ISO 8601 date (its midnight) or
    date-time; a naive one is a wall-clock time in the DAG's zone, as start_date is.
    Raises BackfillError naming `key`."""
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            moment = datetime.combine(date.fromisoformat(text), time())
        except ValueError:
            raise BackfillError(f"'{key}' {value!r} is not an ISO 8601 date or date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(zone))


@dataclass(frozen=True)
class Backfill:
    """The runs a backfill created, and the ticks of its window that already had one."""

    created: list[DagRun] = field(default_factory=list)
    skipped: list[datetime] = field(default_factory=list)


def backfill(
    dag: Dag | str, start: datetime, end: datetime, now: datetime | None = None
) -> Backfill:
    """A run (`triggered_by: backfill`) for every tick in [start, end] that has none,
    whatever start_date says, oldest first and waiting under max_active_runs; one
    transaction. Raises BackfillError, creating nothing, for a window that ends before it
    starts, reaches into the future or holds more than MAX_BACKFILL_TICKS ticks, and
    services.TriggerError for a DAG that cannot run."""
    dag = services.runnable_dag(dag)
    spec = dag.dag_spec
    schedule = spec.cron_schedule() if spec else None
    if spec is None or schedule is None:
        raise BackfillError(f"DAG '{dag.dag_id}' has no schedule; trigger a run instead")
    if end < start:
        raise BackfillError(f"'end' {end.isoformat()} is before 'start' {start.isoformat()}")
    now = now or timezone.now()
    if end > now:
        raise BackfillError(
            f"'end' {end.isoformat()} is in the future (now {now.isoformat()}); "
            "future ticks get their runs from the schedule"
        )
    ticks = list(islice(schedule.ticks_between(start, end), MAX_BACKFILL_TICKS + 1))
    if len(ticks) > MAX_BACKFILL_TICKS:
        raise BackfillError(
            f"the window holds more than {MAX_BACKFILL_TICKS:,} ticks of '{spec.cron}'; "
            "backfill it in smaller windows"
        )
    done = Backfill()
    with transaction.atomic():
        for tick in ticks:
            run = services.trigger_tick(dag, tick, triggered_by="backfill")
            if run is None:
                done.skipped.append(tick)
            else:
                done.created.append(run)
    return done
