"""The engine's per-task statements, prepared once per PostgreSQL session.

psycopg2 sends every statement as text, so PostgreSQL parses and plans it each time; for
the statement that finishes an attempt, planning took longer than running it (EXPLAIN
ANALYZE: 0.2-0.5 ms to plan, 0.2 ms to run). A worker keeps its connection for many
tasks, so a prepared statement is planned once and then only executed. Elsewhere
(SQLite) the statement simply runs.
"""

from __future__ import annotations

import re

from django.db import DatabaseError, connection
from django.db.backends.signals import connection_created
from django.dispatch import receiver

_NAMED = re.compile(r"%\((\w+)\)s")
UNDEFINED_PREPARED_STATEMENT = "26000"
DUPLICATE_PREPARED_STATEMENT = "42P05"


def pgcode(exc: DatabaseError) -> str | None:
    """PostgreSQL's SQLSTATE of a database error (psycopg2's `pgcode`), or None."""
    return getattr(exc.__cause__, "pgcode", None)


class Statement:
    """SQL with %(name)s parameters, run as a prepared statement on PostgreSQL."""

    def __init__(self, name: str, sql: str) -> None:
        self.name = f"flowforge_{name}"
        self.sql = sql
        self.keys: list[str] = []
        self.prepared_sql = _NAMED.sub(self._number, sql)

    def _number(self, match: re.Match) -> str:
        key = match.group(1)
        if key not in self.keys:
            self.keys.append(key)
        return f"${self.keys.index(key) + 1}"

    def execute(self, cursor, params: dict) -> None:
        # Inside a transaction a PREPARE would vanish with a rollback, and a failed EXECUTE
        # would abort the transaction: there the statement runs as plain text. The engine's
        # hot path (claim, a plain success) runs outside any transaction.
        if connection.vendor != "postgresql" or connection.in_atomic_block:
            cursor.execute(self.sql, params)
            return
        values = [params[key] for key in self.keys]
        prepared = connection.__dict__.setdefault("flowforge_prepared", set())
        if self.name in prepared:
            try:
                cursor.execute(self._execute_sql, values)
                return
            except DatabaseError as exc:  # the session lost it (DEALLOCATE, DISCARD ALL)
                if pgcode(exc) != UNDEFINED_PREPARED_STATEMENT:
                    raise
        try:
            cursor.execute(f"PREPARE {self.name} AS {self.prepared_sql}")
        except DatabaseError as exc:  # prepared before this process knew of it
            if pgcode(exc) != DUPLICATE_PREPARED_STATEMENT:
                raise
        prepared.add(self.name)
        cursor.execute(self._execute_sql, values)

    @property
    def _execute_sql(self) -> str:
        return f"EXECUTE {self.name} ({', '.join(['%s'] * len(self.keys))})"


@receiver(connection_created)
def _forget_prepared(sender, connection, **kwargs) -> None:
    """A new session has none of the statements the previous one prepared."""
    connection.__dict__["flowforge_prepared"] = set()
