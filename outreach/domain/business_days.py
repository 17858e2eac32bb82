"""Business days and sending windows: pure date arithmetic over weekends, holidays and blackouts."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MAX_SEARCH_DAYS = 800  # two years of closed days in a row means the config can't send at all


@dataclass(frozen=True)
class BusinessCalendar:
    """Which days count: open weekdays, minus public holidays and blackout ranges."""

    weekdays: frozenset[int]  # 0 = Monday
    is_holiday: Callable[[date], bool]
    blackouts: tuple[tuple[date, date], ...] = ()

    def is_open(self, day: date) -> bool:
        """True if ``day`` is a business day: messages may go out and delays count it."""
        if day.weekday() not in self.weekdays or self.is_holiday(day):
            return False
        return not any(start <= day <= end for start, end in self.blackouts)

    def add_business_days(self, start: date, days: int) -> date:
        """The date ``days`` business days after ``start`` (``start`` itself for 0)."""
        day = start
        for _ in range(days):
            day = self.next_open_day(day + timedelta(days=1))
        return day

    def next_open_day(self, day: date) -> date:
        """``day`` if it is a business day, else the first one after it."""
        for _ in range(_MAX_SEARCH_DAYS):
            if self.is_open(day):
                return day
            day += timedelta(days=1)
        raise ValueError(f"no business day within {_MAX_SEARCH_DAYS} days of {day}")

    def with_blackouts(self, extra: Sequence[tuple[date, date]]) -> BusinessCalendar:
        """This calendar with more blackout ranges (a segment's school breaks)."""
        if not extra:
            return self
        return BusinessCalendar(self.weekdays, self.is_holiday, (*self.blackouts, *extra))


@lru_cache(maxsize=16)
def _holiday_table(country: str, subdivision: str) -> Callable[[date], bool]:
    import holidays  # noqa: PLC0415  (loading the tables is slow; only when asked)

    table = holidays.country_holidays(country, subdiv=subdivision or None)
    return lambda day: day in table


def make_calendar(
    days: Collection[str],
    holidays_country: str = "",
    holidays_subdivision: str = "",
    blackouts: Sequence[tuple[date, date]] = (),
) -> BusinessCalendar:
    """A calendar from the ``[sending]`` settings."""
    is_holiday: Callable[[date], bool] = (
        _holiday_table(holidays_country, holidays_subdivision)
        if holidays_country
        else (lambda _day: False)
    )
    weekdays = frozenset(WEEKDAY_NAMES.index(d) for d in days)
    return BusinessCalendar(weekdays, is_holiday, tuple(blackouts))


@dataclass(frozen=True)
class SendingWindow:
    """Local hours on business days when messages may go out."""

    start: time
    end: time

    def next_opening(self, at: datetime, zone: ZoneInfo, calendar: BusinessCalendar) -> datetime:
        """The first instant at or after ``at`` inside the window of ``zone``."""
        local = at.astimezone(zone)
        day = local.date()
        for _ in range(_MAX_SEARCH_DAYS):
            day = calendar.next_open_day(day)
            opens = datetime.combine(day, self.start, zone)
            closes = datetime.combine(day, self.end, zone)
            candidate = max(opens, local) if day == local.date() else opens
            if candidate < closes:
                return candidate.astimezone(at.tzinfo)
            day += timedelta(days=1)
        raise ValueError("the sending window never opens")

    def contains(self, at: datetime, zone: ZoneInfo, calendar: BusinessCalendar) -> bool:
        """Whether ``at`` falls inside the window on a business day in ``zone``."""
        local = at.astimezone(zone)
        return calendar.is_open(local.date()) and self.start <= local.time() < self.end
