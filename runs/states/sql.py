"""How the statements of this package are written and run: SQL with `%(name)s` parameters,
values as the database backend takes and gives them, and the two spellings that differ
between PostgreSQL and SQLite (a list parameter, a JSON value)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connection
from django.utils import timezone

from ..models import DagRun


def execute(sql: str, params: dict[str, Any]) -> list[tuple]:
    """Run one statement; returns the rows its RETURNING (or SELECT) gives, else []."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def on_postgres() -> bool:
    return connection.vendor == "postgresql"


def any_of(column: str, name: str) -> str:
    """`column` is one of the list parameter `name` (pass the list through `id_list`)."""
    if on_postgres():
        return f"{column} = ANY(%({name})s)"
    return f"{column} IN (SELECT value FROM json_each(%({name})s))"


def id_list(values: Sequence) -> Any:
    """A list parameter for `any_of`: an array on PostgreSQL, JSON text on SQLite."""
    return list(values) if on_postgres() else json.dumps(list(values))


def json_value(name: str) -> str:
    """The JSON parameter `name` (pass JSON text) as the column's type takes it."""
    return f"CAST(%({name})s AS jsonb)" if on_postgres() else f"%({name})s"


def json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def ts(value: datetime | None) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def now() -> Any:
    return ts(timezone.now())


def run_key(run_id: Any) -> Any:
    return DagRun._meta.pk.get_db_prep_value(uuid.UUID(str(run_id)), connection)


def load_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def read_datetime(value: Any) -> datetime | None:
    # Raw SQL gives aware datetimes on PostgreSQL, naive ones in UTC (or text) on SQLite.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and timezone.is_naive(value):
        value = timezone.make_aware(value, connection.timezone)
    return value
