"""Cron ticks in a DAG's timezone (pure functions, no Django)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from .spec import normalize_cron


def spec_cron(spec: dict) -> str | None:
    """The 5-field cron line a DAG spec is scheduled on, or None for manual runs only.
    (Versions stored before the spec kept `cron` beside `schedule` have only the latter.)"""
    if spec.get("cron"):
        return spec["cron"]
    return normalize_cron(spec["schedule"]) if spec.get("schedule") else None


def latest_tick(expr: str, timezone: str, now: datetime) -> datetime:
    """The most recent tick at or before `now` (aware), in the DAG's timezone."""
    # Ticks fall on whole minutes: the latest one before the next minute is at or before now.
    local_now = now.astimezone(ZoneInfo(timezone))
    next_minute = local_now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return croniter(expr, next_minute).get_prev(datetime)


def next_tick(expr: str, timezone: str, now: datetime) -> datetime:
    """The first tick strictly after `now` (aware), in the DAG's timezone."""
    return croniter(expr, now.astimezone(ZoneInfo(timezone))).get_next(datetime)
