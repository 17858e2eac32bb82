"""Review before anything goes out: approve contacts held at import (``[sending] hold_new``),
and send a preview to the practice itself as a test.

Approving re-enrolls a contact as if it were imported at that moment: its enrollment time
(``created_at``, from which step 1 counts) becomes the approval time and it is looked at on
the next pass, so its first step goes out in the next sending window under the usual caps,
never as a backlog of steps "overdue" since the import. The import itself stays in its
history, beside an "approved" entry naming who approved it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import SMTP

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.config import Settings
from outreach.errors import OutreachError
from outreach.mail.abc import OpenSmtp, Outcome
from outreach.mail.compose import OutboundMessage, check_header
from outreach.services.contacts import find_contact, resolve_segment
from outreach.store.database import Store
from outreach.store.models import ContactRow, StageChangeRow

TEST_PREFIX = "[TEST] "


@dataclass
class Approval:
    """What ``approve`` did (or, with ``dry_run``, would do)."""

    approved: list[str] = field(default_factory=list)  # addresses, in the order found
    not_held: list[str] = field(default_factory=list)  # named, but not waiting for review
    dry_run: bool = False


def approve(
    store: Store,
    settings: Settings,
    *,
    now: datetime,
    by: str,
    segment: str | None = None,
    emails: Sequence[str] = (),
    everyone: bool = False,
    dry_run: bool = False,
) -> Approval:
    """Let held contacts be sent to: those of ``segment``, the addresses in ``emails``, or
    with ``everyone`` all of them. ``by`` (who approved) goes into each contact's history.
    An unknown address changes nothing (ContactNotFound)."""
    if not (segment or emails or everyone):
        raise OutreachError("say whom to approve: --segment SEGMENT, EMAIL..., or --all")
    found = Approval(dry_run=dry_run)
    with store.session() as session:
        rows = _chosen(session, settings, segment, emails, everyone)
        for row in rows:
            if row.held_since is None:
                found.not_held.append(row.email)
                continue
            found.approved.append(row.email)
            if dry_run:
                continue
            held_since = row.held_since
            row.held_since = None
            row.created_at = now  # enrolled now: step 1 counts from here
            row.next_check_at = now
            row.updated_at = now
            session.add(
                StageChangeRow(
                    contact_id=row.id,
                    at=now,
                    from_stage=row.stage,
                    to_stage=row.stage,
                    reason=f"approved for sending by {by} (held since {held_since:%Y-%m-%d})",
                )
            )
        if dry_run:
            session.rollback()
    return found


def _chosen(
    session: Session,
    settings: Settings,
    segment: str | None,
    emails: Sequence[str],
    everyone: bool,
) -> list[ContactRow]:
    """The contacts named: every held one (``everyone``), a segment's held ones, and each
    address given (held or not, so the caller can say which were not)."""
    chosen: dict[int, ContactRow] = {}
    held = select(ContactRow).where(ContactRow.held_since.is_not(None)).order_by(ContactRow.id)
    if everyone:
        chosen.update((row.id, row) for row in session.scalars(held))
    elif segment is not None:
        key = resolve_segment(settings, segment)
        query = held.where(ContactRow.segment == key)
        chosen.update((row.id, row) for row in session.scalars(query))
    for address in emails:
        row = find_contact(session, address)
        chosen.setdefault(row.id, row)
    return list(chosen.values())


def test_copy(settings: Settings, message: OutboundMessage) -> OutboundMessage:
    """The message as a test to the practice's own ``notify_address``: "[TEST] " before its
    subject, addressed to the practice, everything else exactly as the contact would get it."""
    to = settings.sender.notify_address
    parsed = message_from_bytes(message.data, policy=SMTP)
    assert isinstance(parsed, EmailMessage)
    subject = TEST_PREFIX + message.subject
    parsed.replace_header("Subject", check_header("Subject", subject))
    parsed.replace_header("To", check_header("To", to))
    return OutboundMessage(
        message_id=message.message_id,
        sender=message.sender,
        recipient=to,
        subject=subject,
        data=parsed.as_bytes(),
    )


async def send_to_me(settings: Settings, smtp: OpenSmtp, message: OutboundMessage) -> str:
    """Send ``test_copy`` of a previewed message through the configured SMTP server; records
    nothing (no ledger row, stage change or history). Returns the address it went to."""
    copy = test_copy(settings, message)
    async with smtp() as transport:
        await transport.connect()
        delivery = await transport.send(copy)
    if delivery.outcome is not Outcome.SENT:
        raise OutreachError(f"the test message to {copy.recipient} was not sent: {delivery.detail}")
    return copy.recipient
