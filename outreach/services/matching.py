"""Matching an inbound message to a contact: our Message-IDs first, then the sender's address.

A Message-ID match from an address that is neither the contact nor its domain is flagged (a
forwarded thread, a colleague answering) and not trusted to change anything. A bounce is
trusted only when it returns a Message-ID we sent to the address it reports: anyone can write
a report, only the receiving side has seen our message. A From the practice's own provider
found failing authentication is flagged. Our own messages (sent copies, a Bcc to ourselves)
never count as replies. No match, no effect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.domain.classify import BOUNCE, COMPLAINT, Classification
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
    if found.message_id and _outbox_rows(session, [found.message_id]):
        return Match(None, None, "one of our own messages", False, ours=True)
    reported = found.kind in (BOUNCE, COMPLAINT)  # a report about our message, by a third party
    match = _bounce(session, found) if reported else _reply(session, found)
    if found.auth_failure and match.trusted:
        return replace(match, how=f"{match.how}, but {found.auth_failure}", trusted=False)
    return match


def _reply(session: Session, found: Classification) -> Match:
    rows = _outbox_rows(session, found.refers_to)
    if rows:
        row = rows[0]
        contact = session.get(ContactRow, row.contact_id)
        assert contact is not None
        base = f"refers to our {row.message_id} (step {row.step_index + 1})"
        if _same_party(found.sender, contact.email):
            return Match(contact.id, contact.email, base, True, row.step_index)
        return Match(
            contact.id,
            contact.email,
            f"{base}, but sent by {found.sender}, not the contact or its domain",
            False,
            row.step_index,
        )
    contact = _by_address(session, found.sender)
    if contact is not None:
        return Match(contact.id, contact.email, f"address {found.sender}", True)
    return Match(None, None, "no contact matches", False)


def _bounce(session: Session, found: Classification) -> Match:
    """Trusted only if the returned headers (or the Original-Envelope-Id) name a message we
    sent to the reported recipient; a report naming none is recorded against the address."""
    recipient = found.recipient
    named = {email_key(a) for a in found.recipients or ((recipient,) if recipient else ())}
    for row in _outbox_rows(session, found.refers_to):
        contact = session.get(ContactRow, row.contact_id)
        assert contact is not None
        if not named or contact.email_key in named:
            how = f"returns our {row.message_id} (step {row.step_index + 1})"
            return Match(contact.id, contact.email, how, True, row.step_index)
    contact = _by_address(session, recipient)
    if contact is None:
        return Match(None, None, "no contact matches", False)
    return Match(
        contact.id,
        contact.email,
        f"a bounce for {recipient} that names none of our messages to that address "
        "(forged, or not about our mail)",
        False,
    )


def _by_address(session: Session, address: str | None) -> ContactRow | None:
    if not address:
        return None
    return session.scalars(
        select(ContactRow).where(ContactRow.email_key == email_key(address))
    ).first()


def _outbox_rows(session: Session, ids: Sequence[str]) -> list[OutboxRow]:
    """Our ledger rows with these Message-IDs, the latest step first: a reply quotes the
    whole thread."""
    if not ids:
        return []
    rows = session.scalars(select(OutboxRow).where(OutboxRow.message_id.in_(list(ids)))).all()
    return sorted(rows, key=lambda r: r.step_index, reverse=True)


def _same_party(sender: str | None, contact_email: str) -> bool:
    if sender is None:
        return False
    sender_domain = sender.rpartition("@")[2].lower()
    return email_key(sender) == email_key(contact_email) or (
        sender_domain == contact_email.rpartition("@")[2].lower()
    )
