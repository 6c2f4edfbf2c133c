"""Cron ticks in a DAG's timezone."""

from datetime import UTC, datetime

from dags.cron import latest_tick, next_tick


def test_latest_tick_is_at_or_before_now():
    now = datetime(2026, 3, 10, 14, 37, 12, tzinfo=UTC)
    assert latest_tick("0 * * * *", "UTC", now) == datetime(2026, 3, 10, 14, 0, tzinfo=UTC)
    on_tick = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)
    assert latest_tick("0 * * * *", "UTC", on_tick) == on_tick


def test_ticks_follow_the_dags_timezone():
    now = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)  # 14:00 in Paris (summer time)
    tick = latest_tick("0 9 * * *", "Europe/Paris", now)
    assert tick.astimezone(UTC) == datetime(2026, 7, 1, 7, 0, tzinfo=UTC)
    assert next_tick("0 9 * * *", "Europe/Paris", now).astimezone(UTC) == datetime(
        2026, 7, 2, 7, 0, tzinfo=UTC
    )
