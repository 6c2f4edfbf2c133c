"""The run page's timeline (Gantt): every attempt of every task on one time axis, its
queue wait and its run time as bars placed in percent of the axis."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from runs.enums import TaskState
from runs.models import TaskAttempt, TaskInstance

MIN_BAR_PERCENT = 0.4  # so that a sub-second attempt on a long timeline stays visible
TICKS = 5  # time labels along the axis, both ends included


def format_duration(seconds: float | None) -> str:
    """A duration for people: "4.2 s", "3 m 05 s", "2 h 03 m"; "" for none."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


@dataclass(frozen=True)
class Span:
    """A stretch of one task's timeline: `kind` "wait" (queued, not started) or "run",
    for try `try_number`, colored by `state`; `end` None while it goes on."""

    kind: str
    state: str
    try_number: int
    start: datetime
    end: datetime | None


def task_spans(instance: TaskInstance, attempts: list[TaskAttempt]) -> list[Span]:
    """The spans of an instance's attempts (rows recorded as they end, in try order) and
    of its current try, which has no row yet while it runs or waits in its queue. Only
    the instance's latest try shows a queue wait: the instance keeps one `queued_at`."""
    tries = [(a.try_number, a.state, a.started_at, a.finished_at) for a in attempts]
    recorded = {attempt.try_number for attempt in attempts}
    if instance.state == TaskState.RUNNING and instance.try_number not in recorded:
        tries.append((instance.try_number, TaskState.RUNNING, instance.started_at, None))
    spans, queued = [], instance.queued_at
    for try_number, state, started, finished in tries:
        if started is None:
            continue
        if try_number == instance.try_number and queued and queued <= started:
            spans.append(Span("wait", TaskState.QUEUED, try_number, queued, started))
        end = finished if finished or state == TaskState.RUNNING else started
        spans.append(Span("run", state, try_number, started, end))
    if instance.state == TaskState.QUEUED and queued:
        spans.append(Span("wait", TaskState.QUEUED, instance.try_number + 1, queued, None))
    return spans


@dataclass(frozen=True)
class Bar:
    """A span placed on the timeline: `left` and `width` in percent of its width."""

    kind: str
    state: str
    try_number: int
    left: float
    width: float
    title: str


@dataclass(frozen=True)
class GanttRow:
    task_id: str
    url: str
    bars: list[Bar]


@dataclass(frozen=True)
class Gantt:
    """Rows of bars over one time axis from `start`, `seconds` long; `ticks` are
    (percent of the width, offset from start) labels along it."""

    rows: list[GanttRow]
    start: datetime | None
    seconds: float
    ticks: list[tuple[float, str]]


def gantt(rows: list[tuple[str, str, list[Span]]], now: datetime) -> Gantt:
    """Place each (task id, url, spans) row on a shared axis; an unended span ends `now`."""
    spans = [span for _, _, row_spans in rows for span in row_spans]
    if not spans:
        return Gantt([GanttRow(t, url, []) for t, url, _ in rows], None, 0.0, [])
    start = min(span.start for span in spans)
    end = max(span.end or now for span in spans)
    seconds = max((end - start).total_seconds(), 0.001)

    def place(span: Span) -> Bar:
        left = (span.start - start).total_seconds() / seconds * 100
        length = ((span.end or now) - span.start).total_seconds()
        width = max(length / seconds * 100, MIN_BAR_PERCENT)
        what = "queued" if span.kind == "wait" else span.state
        title = f"try {span.try_number} {what}: {format_duration(length)}"
        # A sliver at the very end moves left rather than spill off the axis.
        return Bar(span.kind, span.state, span.try_number, min(left, 100 - width), width, title)

    ticks = [(n * 100 / (TICKS - 1), n * seconds / (TICKS - 1)) for n in range(TICKS)]
    return Gantt(
        rows=[GanttRow(t, url, [place(s) for s in row_spans]) for t, url, row_spans in rows],
        start=start,
        seconds=seconds,
        ticks=[(at, f"+{format_duration(offset)}") for at, offset in ticks],
    )
