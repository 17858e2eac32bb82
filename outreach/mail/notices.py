"""Notices to the therapist (a rule's ``notify``, the daily digest): who wrote, never what they
wrote."""

from __future__ import annotations

from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from outreach.config import Settings
from outreach.mail.compose import OutboundMessage, check_header, new_message_id


def notice(
    settings: Settings,
    subject: str,
    lines: list[str],
    refers_to: str | None,
    *,
    to: str | None = None,
) -> OutboundMessage:
    """A plain-text notice to ``to``, by default ``[sender] notify_address``.

    The subject may hold a contact's name: UnsafeHeader if a line break or NUL hides in it.
    """
    sender = settings.sender
    to = check_header("To", to or sender.notify_address)
    from_name = check_header("From", f"outreach for {sender.from_name}")
    message = EmailMessage(policy=SMTP)
    message["From"] = Address(from_name, addr_spec=sender.from_address)
    message["To"] = to
    message["Subject"] = check_header("Subject", subject)
    message["Date"] = format_datetime(datetime.now(UTC))
    message_id = new_message_id(sender.message_id_domain)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: a machine wrote this
    if refers_to:
        message["References"] = check_header("References", refers_to)
    message.set_content("\n".join(lines) + "\n", charset="utf-8")
    return OutboundMessage(message_id, sender.from_address, to, subject, message.as_bytes())
