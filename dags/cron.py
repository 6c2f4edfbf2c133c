"""Cron ticks in a DAG's timezone (pure functions, no Django)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter


def latest_tick(expr: str, timezone: str, now: datetime) -> datetime:
    """The most recent tick at or before `now` (aware), in the DAG's timezone."""
    # Ticks fall on whole minutes: the latest one before the next minute is at or before now.
    local_now = now.astimezone(ZoneInfo(timezone))
    next_minute = local_now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return croniter(expr, next_minute).get_prev(datetime)


def next_tick(expr: str, timezone: str, now: datetime) -> datetime:
    """The first tick strictly after `now` (aware), in the DAG's timezone."""
    return croniter(expr, now.astimezone(ZoneInfo(timezone))).get_next(datetime)
