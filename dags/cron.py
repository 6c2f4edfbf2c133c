"""The one cron engine (CONTRACT section 7): every tick FlowForge acts on, the API's
`next_run_at`, the scheduler's runs, catchup and backfill, comes from `CronSchedule`.

Cron means what Vixie cron means (crontab(5)): when both day-of-month and day-of-week are
restricted, a day matching either fires; day-of-week 0 and 7 are Sunday. croniter reads
the fields (its default `day_or=True` is that rule); this module adds the time zone.

Ticks are found on the wall clock of the DAG's zone and then placed on the time line:
- a wall-clock time that a spring-forward skips is placed with the offset in force before
  the change (02:30 on the skipped hour fires at 03:30 local): it fires once that day;
- a wall-clock time that a fall-back repeats fires once, at its first occurrence;
- ticks are strictly increasing: one that lands on or before the previous one (inside a
  skipped hour) is dropped.
Pure functions of their arguments: no Django, no clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

# A sanity bound: wall-clock steps in a row that give no new tick.
_MAX_WALL_STEPS = 100_000
# More than any daylight-saving shift (1 hour; 30 minutes on Lord Howe Island).
_SHIFT = timedelta(hours=2)


class CronSchedule:
    """A 5-field cron line (as dags/spec.py normalizes it) in an IANA time zone."""

    def __init__(self, cron: str, timezone: str = "UTC") -> None:
        self.cron = cron
        self.zone = ZoneInfo(timezone)

    def __repr__(self) -> str:
        return f"CronSchedule({self.cron!r}, {self.zone.key!r})"

    def ticks_after(self, moment: datetime) -> Iterator[datetime]:
        """Every tick strictly after `moment` (aware), oldest first, as aware datetimes in
        the DAG's zone. Endless: the caller stops."""
        # Start an hour early on the wall clock: a skipped wall time just before `moment`'s
        # may be placed after it.
        walker = croniter(self.cron, self._wall(moment) - _SHIFT, day_or=True)
        last, misses = moment.astimezone(UTC), 0
        while misses < _MAX_WALL_STEPS:
            placed = self._place(walker.get_next(datetime))
            if placed > last:
                last, misses = placed, 0
                yield placed.astimezone(self.zone)
            else:
                misses += 1
        raise RuntimeError(f"{self!r}: no tick found in {_MAX_WALL_STEPS} steps")

    def _wall(self, moment: datetime) -> datetime:
        return moment.astimezone(self.zone).replace(tzinfo=None, fold=0)

    def _place(self, wall: datetime) -> datetime:
        """A wall-clock time on the time line, in UTC: its first occurrence; a skipped one
        with the offset in force before the change, so it lands after the gap. (In UTC
        because datetimes sharing a tzinfo compare by their wall times.)"""
        return wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after `moment`."""
        return next(self.ticks_after(moment))

    def first_at_or_after(self, moment: datetime) -> datetime:
        """The first tick at `moment` or later (a tick exactly at start_date runs)."""
        return self.next_after(moment.astimezone(UTC) - timedelta(microseconds=1))

    def ticks_between(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Every tick in [start, end], oldest first."""
        end = end.astimezone(UTC)
        for tick in self.ticks_after(start.astimezone(UTC) - timedelta(microseconds=1)):
            if tick.astimezone(UTC) > end:
                return
            yield tick

    def latest_at_or_before(self, moment: datetime, since: datetime) -> datetime | None:
        """The latest tick in [since, moment], or None when there is none (walking back
        from `moment`, so a long-missed schedule costs no more than a recent one)."""
        walker = croniter(self.cron, self._wall(moment) + _SHIFT, day_or=True)
        for _ in range(_MAX_WALL_STEPS):
            placed = self._place(walker.get_prev(datetime))
            if placed < since.astimezone(UTC):
                return None
            if placed <= moment.astimezone(UTC):
                # The placed time of a skipped wall time may repeat a later one's: the
                # tick is the one ticks_after gives, which is the same moment.
                return placed.astimezone(self.zone)
        raise RuntimeError(f"{self!r}: no tick found in {_MAX_WALL_STEPS} steps")
