"""When each due message may go out under the sending policy: a pure, deterministic schedule.

Rules, all at once: the sending window (local hours on business days, in the contact's time
zone), a minimum gap between any two sends plus a per-message jitter (so the rhythm looks
human), caps per rolling hour and per practice-local day, and at most N messages per
organization per practice-local day, so five doctors of one clinic are not emailed in the
same minute. A cap of 0 means no cap.
"""

from __future__ import annotations

import bisect
import hashlib
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from outreach.domain.business_days import BusinessCalendar, SendingWindow

_MAX_MOVES = 10_000


@dataclass(frozen=True)
class Policy:
    """The ``[sending]`` rules, resolved."""

    window: SendingWindow
    practice_zone: ZoneInfo
    max_per_hour: int = 0
    max_per_day: int = 0
    min_gap: timedelta = timedelta(0)
    jitter: timedelta = timedelta(0)
    per_organization_per_day: int = 0


@dataclass(frozen=True)
class DueSend:
    """A message that may go out from ``due_at`` on."""

    key: Hashable
    due_at: datetime
    zone: ZoneInfo
    calendar: BusinessCalendar
    organization: str | None = None


@dataclass
class SendLog:
    """Sends already made (or planned), which the next ones must keep their distance from."""

    times: list[datetime] = field(default_factory=list)  # sorted
    per_org_day: Counter[tuple[str, date]] = field(default_factory=Counter)
    per_day: Counter[date] = field(default_factory=Counter)

    @classmethod
    def of(cls, sends: Iterable[tuple[datetime, str | None]], practice_zone: ZoneInfo) -> SendLog:
        log = cls()
        for at, organization in sends:
            log.add(at, organization, practice_zone)
        return log

    def add(self, at: datetime, organization: str | None, practice_zone: ZoneInfo) -> None:
        bisect.insort(self.times, at)
        day = at.astimezone(practice_zone).date()
        self.per_day[day] += 1
        org = organization_key(organization)
        if org:
            self.per_org_day[(org, day)] += 1


def organization_key(organization: str | None) -> str | None:
    """Organizations compare without case or surrounding space."""
    return organization.strip().casefold() or None if organization else None


def schedule(
    dues: Sequence[DueSend], policy: Policy, log: SendLog, *, start: datetime, until: datetime
) -> list[tuple[DueSend, datetime]]:
    """The send time of each message that can go out by ``until``, in time order.

    Messages are placed first-fit in order of due time; ``log`` is extended with each.
    """
    planned = []
    for due in sorted(dues, key=lambda d: (d.due_at, str(d.key))):
        at = _first_fit(due, policy, log, max(due.due_at, start), until)
        if at is None:
            continue
        log.add(at, due.organization, policy.practice_zone)
        planned.append((due, at))
    planned.sort(key=lambda pair: pair[1])
    return planned


def next_slot(
    dues: Sequence[DueSend], policy: Policy, log: SendLog, *, start: datetime, until: datetime
) -> datetime | None:
    """The earliest time, from ``start`` to ``until``, that any of ``dues`` could go out
    (None: none can by ``until``). ``log`` is not extended.

    One message stands for all that share its zone, calendar and organization (the earliest
    due): the window, the gap and the caps treat them alike."""
    first: dict[tuple[object, ...], DueSend] = {}
    for due in dues:
        group = (due.zone.key, due.calendar, organization_key(due.organization))
        if group not in first or due.due_at < first[group].due_at:
            first[group] = due
    slots = [
        slot
        for due in first.values()
        if (slot := _first_fit(due, policy, log, max(due.due_at, start), until)) is not None
    ]
    return min(slots, default=None)


def _first_fit(
    due: DueSend, policy: Policy, log: SendLog, at: datetime, until: datetime
) -> datetime | None:
    gap = policy.min_gap + policy.jitter * _fraction(due.key)
    org = organization_key(due.organization)
    for _ in range(_MAX_MOVES):
        if at > until:
            return None
        opening = policy.window.next_opening(at, due.zone, due.calendar)
        if opening != at:
            at = opening
            continue
        moved = _respect_gap(at, gap, log) or _respect_caps(at, org, policy, log)
        if moved is None:
            return at
        at = moved
    return None


def _respect_gap(at: datetime, gap: timedelta, log: SendLog) -> datetime | None:
    if not gap:
        return None
    i = bisect.bisect_right(log.times, at - gap)  # the first send closer than ``gap`` before
    if i < len(log.times) and log.times[i] < at + gap:
        return log.times[i] + gap
    return None


def _respect_caps(at: datetime, org: str | None, policy: Policy, log: SendLog) -> datetime | None:
    if policy.max_per_hour:
        hour_ago = bisect.bisect_right(log.times, at - timedelta(hours=1))
        in_hour = bisect.bisect_right(log.times, at) - hour_ago
        if in_hour >= policy.max_per_hour:
            return log.times[hour_ago] + timedelta(hours=1, microseconds=1)
    day = at.astimezone(policy.practice_zone).date()
    if policy.max_per_day and log.per_day[day] >= policy.max_per_day:
        return _next_day(day, policy.practice_zone)
    per_org = policy.per_organization_per_day
    if org and per_org and log.per_org_day[(org, day)] >= per_org:
        return _next_day(day, policy.practice_zone)
    return None


def _next_day(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(0), zone)


def _fraction(key: Hashable) -> float:
    """A stable number in [0, 1) for ``key``: the same plan every time it is computed."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64
