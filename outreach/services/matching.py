"""Matching an inbound message to a contact: our Message-IDs first, then the sender's address.

A Message-ID match from an address that is neither the contact nor its domain is flagged (a
forwarded thread, a colleague answering) and not trusted to change anything. Our own messages
(sent copies, a Bcc to ourselves) never count as replies. No match, no effect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.domain.classify import BOUNCE, Classification
from outreach.domain.fields import email_key
from outreach.store.models import ContactRow, OutboxRow


@dataclass(frozen=True)
class Match:
    """Whose message this is, and how we know."""

    contact_id: int | None
    email: str | None
    how: str
    trusted: bool
    step_index: int | None = None  # the step whose message it answers, when known
    ours: bool = False  # one of our own sent messages


def match_message(session: Session, found: Classification, our_address: str) -> Match:
    """The contact an inbound message belongs to (``contact_id`` None when unmatched)."""
    if found.sender is not None and email_key(found.sender) == email_key(our_address):
        return Match(None, None, "sent by us (a Sent copy or a Bcc to ourselves)", False, ours=True)
    if found.message_id and _outbox_row(session, [found.message_id]) is not None:
        return Match(None, None, "one of our own messages", False, ours=True)
    row = _outbox_row(session, found.refers_to)
    if row is not None:
        contact = session.get(ContactRow, row.contact_id)
        assert contact is not None
        base = f"refers to our {row.message_id} (step {row.step_index + 1})"
        if found.kind == BOUNCE or _same_party(found.sender, contact.email):
            return Match(contact.id, contact.email, base, True, row.step_index)
        return Match(
            contact.id,
            contact.email,
            f"{base}, but sent by {found.sender}, not the contact or its domain",
            False,
            row.step_index,
        )
    address = found.recipient if found.kind == BOUNCE else found.sender
    if address:
        contact = session.scalars(
            select(ContactRow).where(ContactRow.email_key == email_key(address))
        ).first()
        if contact is not None:
            return Match(contact.id, contact.email, f"address {address}", True)
    return Match(None, None, "no contact matches", False)


def _outbox_row(session: Session, ids: Sequence[str]) -> OutboxRow | None:
    if not ids:
        return None
    rows = session.scalars(select(OutboxRow).where(OutboxRow.message_id.in_(list(ids)))).all()
    # The latest step referred to: a reply quotes the whole thread.
    return max(rows, key=lambda r: r.step_index) if rows else None


def _same_party(sender: str | None, contact_email: str) -> bool:
    if sender is None:
        return False
    sender_domain = sender.rpartition("@")[2].lower()
    return email_key(sender) == email_key(contact_email) or (
        sender_domain == contact_email.rpartition("@")[2].lower()
    )
