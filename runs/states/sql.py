"""Helpers for the raw SQL of the transitions: values as the database backend takes and
gives them."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from django.db import connection
from django.utils import timezone

from ..models import DagRun


def ts(value: datetime | None):
    return connection.ops.adapt_datetimefield_value(value)


def run_key(run_id) -> str:
    return DagRun._meta.pk.get_db_prep_value(uuid.UUID(str(run_id)), connection)


def placeholders(items) -> str:
    return ", ".join(["%s"] * len(items))


def load_json(value):
    return json.loads(value) if isinstance(value, str) else value


def read_datetime(value):
    # Raw SQL gives aware datetimes on PostgreSQL, naive ones in UTC (or text) on SQLite.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and timezone.is_naive(value):
        value = timezone.make_aware(value, connection.timezone)
    return value
