"""Which step of a segment's sequence is due for a contact, and when: a pure function of its state.

A contact's sequence runs only while it is ``new`` or ``contacted`` and not suppressed; it
stops at once on a reply, bounce, opt-out, ``do_not_contact`` or any move by hand past
``contacted``. Step 1 counts from enrollment (import), each later step from the send of the
one before, in business days of the contact's calendar, at the same local time of day.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from outreach.domain.business_days import BusinessCalendar
from outreach.domain.pipeline import CONTACTED, ENGAGED, NEW, REFERRING
from outreach.domain.states import OutboxState

ACTIVE_STAGES = frozenset({NEW, CONTACTED})
#: Ledger rows at or above this step index are a rule's replies (``reply_with``), not steps.
REPLY_STEP_BASE = 1000
#: Ledger rows at or above this are nurture check-ins: the n-th is NURTURE_STEP_BASE + n.
NURTURE_STEP_BASE = 2000
#: Sources kept in touch with by nurture check-ins.
NURTURE_STAGES = frozenset({ENGAGED, REFERRING})


@dataclass(frozen=True)
class StepRecord:
    """A ledger row of one step: its state and, once sent, when."""

    step_index: int
    state: str
    sent_at: datetime | None


@dataclass(frozen=True)
class DueStep:
    """The next step of a contact's sequence and the earliest time it may go out."""

    step_index: int
    due_at: datetime


def next_step(
    *,
    stage: str,
    suppressed: bool,
    enrolled_at: datetime,
    delays: Sequence[int],
    records: Sequence[StepRecord],
    calendar: BusinessCalendar,
    zone: ZoneInfo,
    paused_until: datetime | None = None,
) -> DueStep | None:
    """The next step to send, or None when the sequence is over, stopped, or waiting on a row.

    ``delays`` are the steps' ``delay_business_days``; ``records`` the contact's ledger rows.
    """
    if stage not in ACTIVE_STAGES or suppressed:
        return None
    index = len(records)
    if index >= len(delays):
        return None
    if index == 0:
        base = enrolled_at
    else:
        previous = max(records, key=lambda r: r.step_index)
        if previous.state != OutboxState.SENT or previous.sent_at is None:
            return None  # the previous step is still in flight, retrying, or unresolved
        base = previous.sent_at
    due = add_business_days(base, delays[index], calendar, zone)
    if paused_until is not None and paused_until > due:
        due = paused_until
    return DueStep(step_index=index, due_at=due)


def add_business_days(
    at: datetime, days: int, calendar: BusinessCalendar, zone: ZoneInfo
) -> datetime:
    """``at`` moved ``days`` business days later, at the same local time of day."""
    if days == 0:
        return at
    local = at.astimezone(zone)
    day = calendar.add_business_days(local.date(), days)
    return datetime.combine(day, local.time(), zone).astimezone(at.tzinfo)


def finished_at(
    *,
    stage: str,
    steps: int,
    records: Sequence[StepRecord],
    after_business_days: int,
    calendar: BusinessCalendar,
    zone: ZoneInfo,
) -> datetime | None:
    """When a contacted source with every step sent and no reply becomes ``no_response``."""
    if stage != CONTACTED or steps == 0 or len(records) < steps:
        return None
    if any(r.state != OutboxState.SENT or r.sent_at is None for r in records):
        return None
    last = max(r.sent_at for r in records if r.sent_at is not None)
    return add_business_days(last, after_business_days, calendar, zone)


@dataclass(frozen=True)
class Touch:
    """How recently we were in touch with a source, for its nurture check-ins."""

    last: datetime  # the latest message sent to it, or its latest stage change
    nurtures_sent: int  # nurture rows in the ledger, whatever their state
    nurture_waiting: bool  # one is queued, retrying, in flight or unresolved


def next_nurture(
    *,
    stage: str,
    suppressed: bool,
    every_days: int,
    touch: Touch,
    paused_until: datetime | None = None,
) -> DueStep | None:
    """The next nurture check-in of an engaged or referring source: ``every_days`` calendar
    days after we were last in touch, never while another is still on its way."""
    if every_days <= 0 or stage not in NURTURE_STAGES or suppressed or touch.nurture_waiting:
        return None
    due = touch.last + timedelta(days=every_days)
    if paused_until is not None and paused_until > due:
        due = paused_until
    return DueStep(step_index=NURTURE_STEP_BASE + touch.nurtures_sent, due_at=due)


def step_label(number: int) -> str:
    """How people read a ledger step (1-based): "step 2", "rule reply", "check-in 1"."""
    if number > NURTURE_STEP_BASE:
        return f"check-in {number - NURTURE_STEP_BASE}"
    if number > REPLY_STEP_BASE:
        return "rule reply"
    return f"step {number}"


def step_name(step_index: int, template: str = "") -> str:
    """A ledger step as people say it: "Intro", "Follow-up 1", "Thank-you", "Check-in 2"."""
    if step_index >= NURTURE_STEP_BASE:
        return f"Check-in {step_index - NURTURE_STEP_BASE + 1}"
    if step_index >= REPLY_STEP_BASE:
        if template in ("thank_you", "thanks"):
            return "Thank-you"
        return f"Reply ({template.replace('_', ' ')})" if template else "Reply"
    return "Intro" if step_index == 0 else f"Follow-up {step_index}"
