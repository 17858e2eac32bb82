"""The delivery ledger as the therapist handles it: list it, settle an ``unknown`` send, pause
all sending by hand (until resumed, or until a date), resume sending after a pause."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from outreach.domain.states import OutboxState
from outreach.errors import OutreachError
from outreach.store import ledger
from outreach.store.database import Store
from outreach.store.ledger import mark_sent
from outreach.store.models import ContactRow, OutboxRow

MAX_ROW_ID = 2**63 - 1  # row ids are 64-bit integers on both backends
PAUSED_BY_HAND = "paused by hand"


@dataclass(frozen=True)
class OutboxEntry:
    """One ledger row as people and scripts see it."""

    id: int
    email: str
    step: int
    subject: str
    state: str
    attempts: int
    message_id: str
    updated_at: datetime
    sent_at: datetime | None
    last_error: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "step": self.step,
            "subject": self.subject,
            "state": self.state,
            "attempts": self.attempts,
            "message_id": self.message_id,
            "updated_at": self.updated_at.isoformat(),
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
            "last_error": self.last_error,
        }


def list_outbox(store: Store, *, state: str | None = None) -> list[OutboxEntry]:
    """Ledger rows, newest first, optionally of one state."""
    query = (
        select(OutboxRow, ContactRow.email)
        .join(ContactRow, OutboxRow.contact_id == ContactRow.id)
        .order_by(OutboxRow.updated_at.desc(), OutboxRow.id.desc())
    )
    if state:
        query = query.where(OutboxRow.state == state)
    with store.session() as session:
        return [
            OutboxEntry(
                row.id,
                email,
                row.step_index + 1,
                row.subject,
                row.state,
                row.attempts,
                row.message_id,
                row.updated_at,
                row.sent_at,
                row.last_error,
            )
            for row, email in session.execute(query)
        ]


def resolve_outbox(store: Store, outbox_id: int, *, sent: bool, now: datetime) -> str:
    """Settle an ``unknown`` row: it was sent (record it), or send it again (same Message-ID)."""
    if not 1 <= outbox_id <= MAX_ROW_ID:
        raise OutreachError(f"no outbox row {outbox_id}")
    with store.session() as session:
        row = session.get(OutboxRow, outbox_id)
        if row is None:
            raise OutreachError(f"no outbox row {outbox_id}")
        if row.state != OutboxState.UNKNOWN:
            raise OutreachError(
                f"outbox row {outbox_id} is {row.state!r}; only 'unknown' rows are resolved"
            )
        if sent:
            mark_sent(
                session.connection(),
                row.id,
                row.contact_id,
                row.step_index,
                row.message_id,
                row.updated_at,
            )
            row.last_error = f"resolved by hand as sent at {now:%Y-%m-%d %H:%M} UTC"
            return "sent"
        row.state = OutboxState.QUEUED
        row.next_attempt_at = None
        row.last_error = f"resolved by hand: send again ({now:%Y-%m-%d %H:%M} UTC)"
        return "queued"


def resume_sending(store: Store, domain: str | None = None) -> str | None:
    """Lift the pause of all sending, or of one recipient domain; returns the reason it was
    paused, or None if it wasn't."""
    with store.session() as session:
        if domain is not None:
            return ledger.resume_domain(session, domain)
        return ledger.resume_sending(session)


def sending_pause(store: Store, now: datetime) -> str | None:
    """Why all sending is paused at ``now``, or None (a pause whose end has come is lifted)."""
    with store.session() as session:
        return ledger.sending_paused(session, now)


@dataclass(frozen=True)
class SendingPause:
    """The pause of all sending in force after ``pause_sending``."""

    reason: str
    until: datetime | None  # None: until ``outreach sending resume``
    earlier: bool  # an earlier pause without an end was already in force, and stays


def pause_sending(
    store: Store, now: datetime, *, until: datetime | None, zone: ZoneInfo
) -> SendingPause:
    """Pause all sending by hand: until ``sending resume``, or with ``until`` until then
    (it lifts itself; shown in the practice's time zone ``zone``). A pause without an end
    already in force (a policy refusal) is kept as it is."""
    if until is not None and until <= now:
        raise OutreachError(f"--until {until.astimezone(zone):%Y-%m-%d %H:%M} has already passed")
    reason = PAUSED_BY_HAND
    if until is not None:
        reason += f" until {until.astimezone(zone):%a %Y-%m-%d %H:%M %Z}"
    with store.session() as session:
        ledger.pause_sending(session, reason, now, keep_first=False, until=until)
        session.flush()
        in_force = ledger.sending_paused(session, now) or reason
        ends = ledger.sending_paused_until(session)
    return SendingPause(in_force, ends, earlier=until is not None and ends is None)
