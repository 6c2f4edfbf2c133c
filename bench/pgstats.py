"""The bench database's own activity in PostgreSQL (pg_stat_database): sessions opened,
time spent executing statements, transactions. Unlike CPU per process, these count only
this database, whatever other sessions on the server do."""

from __future__ import annotations

from collections import Counter

from django.db import connection

FIELDS = ("sessions", "active_time", "xact_commit", "xact_rollback")


def activity() -> dict[str, float]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            f"SELECT {', '.join(FIELDS)} FROM pg_stat_database WHERE datname = current_database()"
        )
        return dict(zip(FIELDS, map(float, cursor.fetchone()), strict=True))


def per_task(before: dict[str, float], after: dict[str, float], tasks: int) -> dict[str, float]:
    """Sessions, commits and milliseconds of statement execution per task instance.

    Statistics reach pg_stat_database when a session ends or at most every second or so,
    so read `after` once the workers have stopped (their sessions closed).
    """
    delta = {name: after[name] - before[name] for name in FIELDS}
    return {
        "sessions": round(delta["sessions"] / tasks, 3),
        "commits": round(delta["xact_commit"] / tasks, 3),
        "active_ms": round(delta["active_time"] / tasks, 3),
    }


def rows_written() -> Counter:
    """Rows inserted, updated or deleted so far in each table of the bench database.

    Counts by table from pg_stat_user_tables, this session's own writes included: they
    are flushed to the shared statistics when the first statement's transaction ends.
    Call outside a transaction block.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables")
        return Counter(dict(cursor.fetchall()))
