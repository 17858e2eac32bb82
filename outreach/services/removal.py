"""Removing a contact (``contacts remove``), and erasing one at its owner's request
(``contacts remove --forget``).

Decisions:
- ``remove`` deletes the contact with its messages, stage changes and referrals; the inbound
  events about it stay, no longer linked to anyone. Removing never makes an address reachable
  again: a suppression stays, and a contact that had left (unsubscribed, bounced,
  do_not_contact) or has a possible opt-out, bounce or complaint waiting for ``inbox decide``
  is suppressed first.
- ``remove --forget`` (a data-deletion request) also deletes the inbound events about it, and
  keeps the address only as a hash (``fields.erased_key``) on the suppression list, with a
  reason that names nothing: always, since a person who asks to be forgotten must not be
  re-imported from an old export. Wherever else the address was written down (another
  contact's history or inbound events, a recipient domain's or all sending's pause reason, a
  referral note) it is replaced by ``[erased]``. It also works after a plain ``remove``, on
  what that left. An unsalted hash of an address can be confirmed by whoever already knows the
  address; it names no one to anybody else. Mail in the practice's mailbox and the daemon's
  logs are outside the database: README, "One contact at a time".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy import update as update_rows
from sqlalchemy.orm import Session

from outreach.domain.fields import email_key, erased_key, normalize_email
from outreach.domain.pipeline import EXIT_STAGES
from outreach.domain.states import InboundKind
from outreach.errors import ContactNotFound
from outreach.store.database import Store
from outreach.store.ledger import suppress
from outreach.store.models import (
    ContactRow,
    DomainPauseRow,
    InboundEventRow,
    OutboxRow,
    ReferralRow,
    StageChangeRow,
    StateRow,
    SuppressionRow,
)

ERASED = "[erased]"
# Readings a therapist may still confirm with `inbox decide`: each would have suppressed.
IRREVERSIBLE = (InboundKind.BOUNCE, InboundKind.UNSUBSCRIBE, InboundKind.COMPLAINT)


@dataclass(frozen=True)
class Removal:
    """What ``remove_contact`` did."""

    email: str
    forgotten: bool
    #: The address stays on the suppression list (as a hash when forgotten).
    suppressed: bool
    messages: int
    inbound_events: int


def remove_contact(store: Store, email: str, *, now: datetime, forget: bool = False) -> Removal:
    """Delete one contact (module docstring); ``forget`` erases everything about it.
    ContactNotFound for an address outreach knows nothing about."""
    key, address = _key(email)
    with store.session() as session:
        row = session.scalars(select(ContactRow).where(ContactRow.email_key == key)).first()
        if row is None:
            if forget and _known(session, key, address):
                erased = _erase_traces(session, key, address, now)  # left by a plain remove
                return Removal(address, True, True, 0, erased)
            raise ContactNotFound(email)
        address = row.email
        if row.stage in EXIT_STAGES:
            suppress(session, key, f"{row.stage}; contact removed {now:%Y-%m-%d}", now)
        elif _pending_irreversible(session, row.id):
            reason = f"a possible opt-out or bounce awaited review; contact removed {now:%Y-%m-%d}"
            suppress(session, key, reason, now)
        session.flush()
        messages = session.connection().execute(
            delete(OutboxRow).where(OutboxRow.contact_id == row.id)
        )
        events = InboundEventRow.contact_id == row.id
        erased = 0
        if forget:
            erased = session.connection().execute(delete(InboundEventRow).where(events)).rowcount
        else:
            session.execute(update_rows(InboundEventRow).where(events).values(contact_id=None))
        session.delete(row)
        session.flush()
        if forget:
            erased += _erase_traces(session, key, address, now)
        suppressed = forget or _on_list(session, key)
        return Removal(address, forget, suppressed, messages.rowcount, erased)


def _key(email: str) -> tuple[str, str]:
    try:
        address = normalize_email(email)
    except ValueError:
        address = email.strip()
    return email_key(address), address


def _pending_irreversible(session: Session, contact_id: int) -> bool:
    return (
        session.scalar(
            select(InboundEventRow.id).where(
                InboundEventRow.contact_id == contact_id,
                InboundEventRow.review == "pending",
                InboundEventRow.kind.in_([str(k) for k in IRREVERSIBLE]),
            )
        )
        is not None
    )


def _on_list(session: Session, key: str) -> bool:
    keys = (key, erased_key(key))
    query = select(SuppressionRow.id).where(SuppressionRow.email_key.in_(keys))
    return session.scalar(query) is not None


def _known(session: Session, key: str, address: str) -> bool:
    """Whether anything names the address after its contact was removed."""
    return _on_list(session, key) or bool(_naming(session, address))


def _naming(session: Session, address: str) -> list[InboundEventRow]:
    """The inbound events whose recorded words name ``address`` (any case)."""
    pattern = _pattern(address)
    return [
        event
        for event in session.scalars(select(InboundEventRow))
        if pattern.search(event.effect or "") or pattern.search(json.dumps(event.detail or {}))
    ]


def _erase_traces(session: Session, key: str, address: str, now: datetime) -> int:
    """Keep the address only as a hash on the suppression list; delete the events about it
    that no contact owns; write ``[erased]`` wherever else it was written. Returns how many
    events were deleted."""
    pattern = _pattern(address)
    deleted = 0
    for event in _naming(session, address):
        if event.contact_id is None:
            session.delete(event)
            deleted += 1
        else:  # another contact's event (a colleague's "new address" auto-reply)
            event.effect = pattern.sub(ERASED, event.effect or "")
            event.detail = _scrubbed(event.detail or {}, pattern)
    for pause in session.scalars(select(DomainPauseRow)):
        pause.reason = pattern.sub(ERASED, pause.reason)
    for fact in session.scalars(select(StateRow)):
        fact.value = pattern.sub(ERASED, fact.value)
    for change in session.scalars(select(StageChangeRow)):
        if pattern.search(change.reason):
            change.reason = pattern.sub(ERASED, change.reason)
    for referral in session.scalars(select(ReferralRow)):
        if pattern.search(referral.note or ""):
            referral.note = pattern.sub(ERASED, referral.note)
    session.execute(delete(SuppressionRow).where(SuppressionRow.email_key == key))
    suppress(session, erased_key(key), f"erased at the owner's request {now:%Y-%m-%d}", now)
    return deleted


def _pattern(address: str) -> re.Pattern[str]:
    return re.compile(re.escape(address), re.IGNORECASE)


def _scrubbed(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(ERASED, value)
    if isinstance(value, dict):
        return {k: _scrubbed(v, pattern) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v, pattern) for v in value]
    return value
