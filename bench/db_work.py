"""Database work per completed task instance: statements, round trips and rows written,
counted in-process (bench/inprocess.py) around each attempt and around each trigger.

Django's CaptureQueriesContext logs BEGIN, COMMIT and savepoints as well as SQL
statements; both counts are reported. Rows written are PostgreSQL's own counts of rows
inserted, updated and deleted in each table (pg_stat_user_tables), read before and after.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.db import connection
from django.test.utils import CaptureQueriesContext

from runs.services import trigger_run

from . import inprocess, pgstats, workloads
from .context import Context
from .stats import BenchResult

NAME = "db_work"
TITLE = "Database work per task instance"
TARGET_ROUND_TRIPS = 6  # issue 5: at most 6 database round trips per successful task
TRANSACTION_CONTROL = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE SAVEPOINT)\b", re.I)


def kind(sql: str) -> str:
    """BEGIN, COMMIT, SAVEPOINT..., or the statement's first word (SELECT, UPDATE...)."""
    match = TRANSACTION_CONTROL.match(sql)
    word = match.group(1) if match else sql.split(None, 1)[0]
    return word.upper()


@dataclass
class Tally:
    """What a stretch of engine work sent to the database."""

    statements: Counter = field(default_factory=Counter)  # kind -> count
    rows_written: Counter = field(default_factory=Counter)  # table -> rows

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        # The log keeps the last 9,000 queries; once full, CaptureQueriesContext (which
        # slices it by length) would see none, so each count starts from an empty log.
        connection.queries_log.clear()
        with CaptureQueriesContext(connection) as captured:
            yield
        self.statements.update(kind(query["sql"]) for query in captured.captured_queries)

    @contextlib.contextmanager
    def counting_rows(self) -> Iterator[None]:
        before = pgstats.rows_written()
        yield
        self.rows_written.update(pgstats.rows_written() - before)

    def per(self, count: int) -> dict:
        control = sum(n for k, n in self.statements.items() if TRANSACTION_CONTROL.match(k))
        total = sum(self.statements.values())
        return {
            "round_trips": total / count,
            "statements": (total - control) / count,
            "by_kind": {k: n / count for k, n in sorted(self.statements.items())},
            "rows_written": sum(self.rows_written.values()) / count,
            "rows_by_table": {k: n / count for k, n in sorted(self.rows_written.items())},
        }


def count_run(width: int, queue: str) -> tuple[dict, dict]:
    """(per task instance, per trigger) database work of one fan-out run."""
    dag = workloads.submit(workloads.fan_out_spec(f"bench-db-{width}", width, queue))
    trigger, tasks = Tally(), Tally()
    with trigger.counting_rows(), trigger.counting():
        run_id = str(trigger_run(dag, triggered_by="bench").id)
    with tasks.counting_rows():
        executed = inprocess.play_worker([run_id], tasks.counting)
    if workloads.failed_runs([run_id]):
        raise RuntimeError(f"db_work run {run_id} did not succeed")
    return tasks.per(executed), trigger.per(width)


def _describe(per_task: dict) -> str:
    kinds = ", ".join(f"{k} {n:.2f}" for k, n in per_task["by_kind"].items())
    tables = ", ".join(f"{k} {n:.2f}" for k, n in per_task["rows_by_table"].items())
    return f"statements by kind: {kinds}; rows written by table: {tables}"


def run(ctx: Context) -> BenchResult:
    width = ctx.sizes.db_width
    result = BenchResult(
        NAME,
        TITLE,
        f"one {width}-task fan-out run executed in this process (messages to a queue nobody "
        "consumes; the bench plays the worker), counting what each attempt (claim, "
        "execute, complete) and the trigger send to PostgreSQL. Round trips = every "
        "logged query including BEGIN/COMMIT/SAVEPOINT; statements = without them. "
        f"Baseline column: issue 5's target of {TARGET_ROUND_TRIPS} round trips per task.",
    )
    queue = inprocess.nobody_queue()
    for repetition in range(ctx.repeat):
        per_task, per_trigger = count_run(width, queue)
        inprocess.purge(ctx.env, queue)
        ctx.log(f"db_work #{repetition + 1}: {per_task}")
        result.figure("round trips per task", "queries", "target").add(
            per_task["round_trips"], TARGET_ROUND_TRIPS
        )
        result.figure("statements per task (no BEGIN/COMMIT)", "queries").add(
            per_task["statements"]
        )
        result.figure("rows written per task", "rows").add(per_task["rows_written"])
        result.figure("trigger: round trips per task instance", "queries").add(
            per_trigger["round_trips"]
        )
        result.figure("trigger: rows written per task instance", "rows").add(
            per_trigger["rows_written"]
        )
    result.details |= {"per_task": per_task, "per_trigger_instance": per_trigger}
    result.notes += [f"per task: {_describe(per_task)}", f"trigger: {_describe(per_trigger)}"]
    return result
