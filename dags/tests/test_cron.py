"""The cron engine against known calendars (crontab(5); CONTRACT section 7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo

import pytest

from dags.cron import CronSchedule


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def local(zone: str, *parts: int, fold: int = 0) -> datetime:
    return datetime(*parts, tzinfo=ZoneInfo(zone), fold=fold)


def days(ticks) -> list[str]:
    return [tick.strftime("%a %Y-%m-%d %H:%M") for tick in ticks]


@pytest.mark.parametrize(
    ("cron", "after", "expected"),
    [
        # Day-of-month OR day-of-week when both are restricted: the 13th, and Fridays.
        (
            "0 0 13 * 5",
            utc(2026, 1, 1),
            ["Fri 2026-01-02 00:00", "Fri 2026-01-09 00:00", "Tue 2026-01-13 00:00"],
        ),
        # Only one restricted: that one alone decides.
        ("0 0 13 * *", utc(2026, 1, 1), ["Tue 2026-01-13 00:00", "Fri 2026-02-13 00:00"]),
        ("0 0 * * 5", utc(2026, 1, 1), ["Fri 2026-01-02 00:00", "Fri 2026-01-09 00:00"]),
        # Sunday is 0 and 7 and SUN.
        ("0 9 * * 0", utc(2026, 1, 1), ["Sun 2026-01-04 09:00", "Sun 2026-01-11 09:00"]),
        ("0 9 * * 7", utc(2026, 1, 1), ["Sun 2026-01-04 09:00", "Sun 2026-01-11 09:00"]),
        ("0 9 * * sun", utc(2026, 1, 1), ["Sun 2026-01-04 09:00", "Sun 2026-01-11 09:00"]),
        ("0 9 * * 5-7", utc(2026, 1, 1), ["Fri 2026-01-02 09:00", "Sat 2026-01-03 09:00",
                                          "Sun 2026-01-04 09:00"]),
        # 29 February: leap years only.
        ("0 0 29 2 *", utc(2026, 1, 1), ["Tue 2028-02-29 00:00", "Sun 2032-02-29 00:00"]),
        ("0 0 29 2 *", utc(2027, 3, 1), ["Tue 2028-02-29 00:00", "Sun 2032-02-29 00:00"]),
        # Names of months.
        ("30 6 1 jan,jul *", utc(2026, 1, 2), ["Wed 2026-07-01 06:30", "Fri 2027-01-01 06:30"]),
    ],
)  # fmt: skip
def test_ticks_in_utc(cron, after, expected):
    ticks = islice(CronSchedule(cron).ticks_after(after), len(expected))
    assert days(ticks) == expected


@pytest.mark.parametrize(
    ("zone", "cron", "after", "expected_utc"),
    [
        # Spring forward, Berlin, 29 March 2026: 02:00-03:00 does not exist. A daily
        # 02:30 fires once that day (at 03:30 local, 01:30 UTC); the days around it too.
        ("Europe/Berlin", "30 2 * * *", utc(2026, 3, 28),
         ["2026-03-28 01:30", "2026-03-29 01:30", "2026-03-30 00:30"]),
        # Fall back, Berlin, 25 October 2026: 02:00-03:00 happens twice. Once, the first.
        ("Europe/Berlin", "30 2 * * *", utc(2026, 10, 24),
         ["2026-10-24 00:30", "2026-10-25 00:30", "2026-10-26 01:30"]),
        # Every 30 minutes across the gap: no tick twice, none going back.
        ("Europe/Berlin", "0,30 * * * *", utc(2026, 3, 29, 0, 0),
         ["2026-03-29 00:30", "2026-03-29 01:00", "2026-03-29 01:30", "2026-03-29 02:00"]),
        # Every 30 minutes across the repeated hour: each wall time once.
        ("Europe/Berlin", "0,30 * * * *", utc(2026, 10, 24, 23, 30),
         ["2026-10-25 00:00", "2026-10-25 00:30", "2026-10-25 02:00", "2026-10-25 02:30"]),
        # New York, 8 March 2026 (02:00 -> 03:00) and 1 November 2026 (02:00 -> 01:00).
        ("America/New_York", "30 2 * * *", utc(2026, 3, 7, 12),
         ["2026-03-08 07:30", "2026-03-09 06:30"]),
        ("America/New_York", "30 1 * * *", utc(2026, 10, 31, 12),
         ["2026-11-01 05:30", "2026-11-02 06:30"]),
        # A daily 09:00 keeps its wall time through both changes.
        ("America/New_York", "0 9 * * *", utc(2026, 3, 7, 15),
         ["2026-03-08 13:00", "2026-03-09 13:00"]),
    ],
)  # fmt: skip
def test_ticks_across_daylight_saving_changes(zone, cron, after, expected_utc):
    ticks = islice(CronSchedule(cron, zone).ticks_after(after), len(expected_utc))
    assert [t.astimezone(UTC).strftime("%Y-%m-%d %H:%M") for t in ticks] == expected_utc


def test_ticks_are_in_the_dags_zone_and_strictly_after():
    schedule = CronSchedule("0 9 * * *", "Europe/Berlin")
    tick = schedule.next_after(local("Europe/Berlin", 2026, 6, 1, 9, 0))
    assert tick == local("Europe/Berlin", 2026, 6, 2, 9, 0)
    assert tick.utcoffset().total_seconds() == 7200


def test_start_is_inclusive_and_windows_are_closed():
    schedule = CronSchedule("0 * * * *")
    assert schedule.first_at_or_after(utc(2026, 1, 1, 5)) == utc(2026, 1, 1, 5)
    assert schedule.first_at_or_after(utc(2026, 1, 1, 5, 0, 1)) == utc(2026, 1, 1, 6)
    window = list(schedule.ticks_between(utc(2026, 1, 1, 5), utc(2026, 1, 1, 8)))
    assert window == [utc(2026, 1, 1, h) for h in (5, 6, 7, 8)]


@pytest.mark.parametrize(
    ("zone", "cron", "moment"),
    [
        ("UTC", "*/7 * * * *", utc(2026, 5, 5, 12, 3)),
        ("Europe/Berlin", "30 2 * * *", utc(2026, 3, 29, 12)),
        ("Europe/Berlin", "0,30 * * * *", utc(2026, 10, 25, 1, 10)),
        ("America/New_York", "30 1 * * *", utc(2026, 11, 1, 7)),
        ("UTC", "0 0 29 2 *", utc(2031, 1, 1)),
    ],
)
def test_latest_tick_walking_back_agrees_with_walking_forward(zone, cron, moment):
    schedule = CronSchedule(cron, zone)
    since = moment - timedelta(days=3 * 366)
    forward = list(schedule.ticks_between(since, moment))[-1]
    assert schedule.latest_at_or_before(moment, since) == forward
    assert schedule.latest_at_or_before(moment, forward + (moment - forward) / 2) is None or (
        forward == moment
    )


def test_windows_in_the_dags_own_zone_compare_on_the_time_line():
    # Datetimes that share a tzinfo compare by wall time; across a spring-forward that
    # would be wrong, so windows are compared in UTC.
    zone = "Europe/Berlin"
    window = CronSchedule("0,30 * * * *", zone).ticks_between(
        local(zone, 2026, 3, 29, 1, 30), local(zone, 2026, 3, 29, 3, 30)
    )
    assert [t.astimezone(UTC).strftime("%H:%M") for t in window] == ["00:30", "01:00", "01:30"]
