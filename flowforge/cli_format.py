"""How the `flowforge` CLI shows API answers: aligned tables, times and durations."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime

MAX_CELL = 60  # long errors and commands would push every other column off the screen


def cell(value: object, limit: int = MAX_CELL) -> str:
    """One table cell: a single line, `-` for nothing, cut to `limit` characters."""
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, list | tuple):
        value = ",".join(str(item) for item in value)
    text = " ".join(str(value).split())  # newlines would break the row apart
    return text if len(text) <= limit else text[: limit - 1] + "…"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    lines = [list(headers), *([cell(value) for value in row] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def key_values(pairs: Iterable[tuple[str, object]]) -> str:
    """`key:  value` lines with the values aligned, for one object's fields."""
    pairs = [(key, cell(value, limit=200)) for key, value in pairs]
    width = max((len(key) for key, _ in pairs), default=0) + 1
    return "\n".join(f"{key + ':':<{width}}  {value}" for key, value in pairs)


def when(iso: str | None) -> str | None:
    """An API timestamp (ISO 8601 with offset) as local `YYYY-MM-DD HH:MM:SS`."""
    if not iso:
        return None
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso  # show what the server sent rather than nothing
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def seconds(value: float | None) -> str | None:
    """A duration in seconds, rounded for reading: `0.42s`, `8.1s`, `2m05s`."""
    if value is None:
        return None
    if value < 1:
        return f"{value:.2f}s"
    if value < 60:
        return f"{value:.1f}s"
    minutes, rest = divmod(int(round(value)), 60)
    return f"{minutes}m{rest:02d}s"


def tries(task: dict) -> str:
    return f"{task.get('try_number', 0)}/{task.get('max_tries', '?')}"


def run_duration(run: dict) -> float | None:
    """Seconds from start to finish of a run, once it has both."""
    if not (run.get("started_at") and run.get("finished_at")):
        return None
    started = datetime.fromisoformat(run["started_at"])
    return (datetime.fromisoformat(run["finished_at"]) - started).total_seconds()


def yes_no(flag: object) -> str:
    return "yes" if flag else "no"


def counts(by_name: dict, zeros: bool = False) -> str:
    """`running 1, success 5`: a dict of counts on one line, zeros left out unless asked."""
    return ", ".join(f"{name} {n}" for name, n in by_name.items() if n or zeros) or "none"


# --- one renderer per kind of API answer ------------------------------------------------


def render_run(run: dict) -> str:
    """A run's fields, a table of its task instances, then one of its repairs if any."""
    fields = key_values(
        [
            ("run", run["run_id"]),
            ("dag", f"{run['dag_id']} (version {run.get('version')})"),
            ("state", run["state"]),
            ("triggered by", run.get("triggered_by")),
            ("params", json.dumps(run.get("params") or {})),
            ("created", when(run.get("created_at"))),
            ("started", when(run.get("started_at"))),
            ("finished", when(run.get("finished_at"))),
            ("duration", seconds(run_duration(run))),
        ]
    )
    sections = [fields]
    if tasks := run.get("tasks"):
        rows = (
            [
                t["task_id"],
                t["state"],
                tries(t),
                seconds(t.get("duration")),
                t.get("worker"),
                t.get("exit_code"),
                t.get("error"),
            ]
            for t in tasks
        )
        headers = ["TASK", "STATE", "TRIES", "DURATION", "WORKER", "EXIT", "ERROR"]
        sections.append(table(headers, rows))
    if repairs := run.get("repairs"):  # older servers send none
        sections.append(f"REPAIRS\n{render_repairs(repairs)}")
    return "\n\n".join(sections)


def repair_details(repair: dict) -> str:
    """A repair's details in a few words: `downstream`, `success (was failed)`."""
    details = dict(repair.get("details") or {})
    words = []
    if "downstream" in details:
        words.append("downstream" if details.pop("downstream") else "no downstream")
    if "state" in details:
        state, was = details.pop("state"), details.pop("was", None)
        words.append(f"{state} (was {was})" if was else str(state))
    words += [f"{key}={value}" for key, value in details.items()]  # what a newer server adds
    return ", ".join(words)


def render_repairs(repairs: list[dict]) -> str:
    """A run's repair audit trail, oldest first, as the API lists it."""
    headers = ["AT", "BY", "ACTION", "TASK", "DETAILS", "TASKS"]
    rows = (
        [
            when(r.get("at")),
            r.get("by"),
            r.get("action"),
            r.get("task_id"),
            repair_details(r),
            r.get("tasks"),
        ]
        for r in repairs
    )
    return table(headers, rows)


def render_runs(runs: list[dict]) -> str:
    headers = ["RUN_ID", "DAG", "VERSION", "STATE", "TRIGGERED_BY", "CREATED", "DURATION"]
    rows = (
        [
            r["run_id"],
            r["dag_id"],
            r.get("version"),
            r["state"],
            r.get("triggered_by"),
            when(r.get("created_at")),
            seconds(run_duration(r)),
        ]
        for r in runs
    )
    return table(headers, rows)


def render_backfill(done: dict) -> str:
    """The runs a backfill created, one per tick, and the ticks it skipped."""
    headers = ["LOGICAL_DATE", "RUN_ID", "STATE"]
    created = done.get("created") or []
    rows = [[r.get("logical_date"), r["run_id"], r["state"]] for r in created]
    rows += [[tick, "(already had a run)", ""] for tick in done.get("skipped") or []]
    summary = f"{len(created)} created, {len(done.get('skipped') or [])} skipped"
    return f"{table(headers, sorted(rows, key=lambda row: str(row[0])))}\n{summary}"


def render_dags(dags: list[dict]) -> str:
    headers = ["DAG_ID", "VERSION", "TASKS", "SCHEDULE", "PAUSED", "ACTIVE", "NEXT_RUN"]
    rows = (
        [
            d["dag_id"],
            d.get("version"),
            len(d.get("tasks") or []),
            d.get("schedule"),
            yes_no(d.get("is_paused")),
            yes_no(d.get("is_active")),
            when(d.get("next_run_at")),
        ]
        for d in dags
    )
    return table(headers, rows)


def render_pools(pools: list[dict]) -> str:
    headers = ["NAME", "SLOTS", "RUNNING", "DESCRIPTION"]
    rows = ([p["name"], p.get("slots"), p.get("running"), p.get("description")] for p in pools)
    return table(headers, rows)


def render_status(status: dict, api_url: str) -> str:
    dags = status.get("dags") or {}
    queues = status.get("queues") or {}
    return key_values(
        [
            ("api", api_url),
            (
                "dags",
                f"{dags.get('total')} total, {dags.get('active')} active, "
                f"{dags.get('paused')} paused",
            ),
            ("runs", counts(status.get("runs") or {})),
            ("tasks", counts(status.get("tasks") or {})),
            ("queues", queues.get("error") or counts(queues, zeros=True)),  # error: broker down
            ("dead letters", status.get("dead_letters")),
            ("workers alive", status.get("workers_alive")),
        ]
    )


def render_workers(workers: list[dict]) -> str:
    headers = ["HOSTNAME", "PID", "QUEUES", "RUNNING", "LAST_HEARTBEAT", "STARTED"]
    rows = (
        [
            w["hostname"],
            w.get("pid"),
            w.get("queues"),
            len(w.get("running_tasks") or []),
            when(w.get("last_heartbeat")),
            when(w.get("started_at")),
        ]
        for w in workers
    )
    return table(headers, rows)


def render_dead_letters(entries: list[dict]) -> str:
    headers = ["ID", "DAG", "TASK", "RUN_ID", "ATTEMPTS", "CREATED", "RETRIED", "ERROR"]
    rows = (
        [
            e["id"],
            e.get("dag_id"),
            e.get("task_id"),
            e.get("run_id"),
            e.get("attempts"),
            when(e.get("created_at")),
            when(e.get("retried_at")),
            e.get("error"),
        ]
        for e in entries
    )
    return table(headers, rows)


def render_logs(logs: dict) -> str:
    """Each attempt under a header line, its stdout, stderr and error in full."""
    attempts = logs.get("attempts") or []
    if not attempts:
        return f"task {logs.get('task_id')} is {logs.get('state')}; no attempts yet"
    blocks = []
    for attempt in attempts:
        lines = [
            f"--- attempt {attempt['try_number']}: {attempt['state']}, "
            f"exit {cell(attempt.get('exit_code'))}, {cell(seconds(attempt.get('duration')))}"
            f" on {cell(attempt.get('worker'))} ---"
        ]
        for stream in ("stdout", "stderr", "error"):
            if text := (attempt.get(stream) or "").rstrip():
                lines.append(f"[{stream}]\n{text}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)
