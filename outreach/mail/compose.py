"""Composing outbound messages: the template context, headers, threading and the bytes to send.

Every header value is checked first (``check_header``): CR, LF, the other line breaks, NUL,
and an encoded word that decodes to one, which the email package's SMTP policy lets through
(CVE-2024-6923). Non-ASCII values and long lines are encoded and folded by that policy.
"""

from __future__ import annotations

import binascii
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from functools import lru_cache
from typing import Any

from outreach.config import Segment, Settings
from outreach.domain.fields import has_control_characters
from outreach.errors import TemplateProblem
from outreach.mail.templates import ContactFields, RenderedMessage

CONTACT_FIELDS = ("email", "first_name", "last_name", "title", "organization", "timezone")
NEUTRAL_GREETING = "Hello,"
# Letters after a name ("MD", "NP", "LCSW", "PhD") are credentials, not a form of address:
# "Dear NP Park," is wrong, so a contact titled with one is greeted by first name.
_CREDENTIALS = {"phd", "psyd", "edd", "dmin", "mdiv", "jd", "esq"}


class UnsafeHeader(TemplateProblem, ValueError):
    """A header value holding a line break or NUL, as it is or in an encoded word: the message
    is refused rather than sent (a dispatch pass reports it and skips that contact)."""

    def __init__(self, header: str, value: str) -> None:
        self.header = header
        super().__init__(
            f"{header} header",
            f"{value!r} holds a line break or NUL (perhaps in an encoded word, =?...?=); "
            "the message is refused rather than sent",
        )


def check_header(name: str, value: str) -> str:
    """``value``, or UnsafeHeader naming header ``name`` if it would break the header's line.

    Checked on the value as given and decoded: Pythons without the CVE-2024-6923 fix write an
    encoded word's decoded CR LF out as a real line break, a header of the sender's choosing.
    """
    if has_control_characters(value):
        raise UnsafeHeader(name, value)
    return value


def new_message_id(domain: str) -> str:
    """A fresh Message-ID at our domain (RFC 5322 section 3.6.4): 128 random bits."""
    return f"<{secrets.token_hex(16)}@{domain}>"


def greeting(
    title: str | None, first_name: str | None, last_name: str | None, address_as: str | None
) -> str:
    """The opening line: the contact's own title and last name ("Dear Rabbi Feldman,"), else
    the segment's ``address_as`` for a contact with no title at all (the segment says every
    source in it holds that title), else the first name ("Dear Priya,"), else "Hello,"."""
    title = (title or "").strip()
    form = title if title else (address_as or "").strip()
    if form and last_name and not _is_credential(form):
        return f"Dear {form} {last_name},"
    if first_name:
        return f"Dear {first_name},"
    return NEUTRAL_GREETING


def _is_credential(title: str) -> bool:
    letters = title.replace(".", "").replace("-", "").replace(",", "").replace(" ", "")
    return letters.lower() in _CREDENTIALS or (len(letters) >= 2 and letters.isupper())


def template_context(
    settings: Settings,
    segment_name: str,
    contact: Mapping[str, Any],
    *,
    step_number: int,
    template: str,
) -> dict[str, Any]:
    """What a template sees. Empty contact fields are left out, so using one is the contact's
    missing data (``MissingContactField``), never a blank in a sent message."""
    segment: Segment = settings.segments[segment_name]
    custom = ContactFields({k: v for k, v in (contact.get("custom") or {}).items() if v})
    contact_view = ContactFields({**custom, "custom": custom})
    contact_view.update({k: contact[k] for k in CONTACT_FIELDS if contact.get(k)})
    if contact.get("tags"):
        contact_view["tags"] = list(contact["tags"])
    opening = greeting(
        _text(contact.get("title")),
        _text(contact.get("first_name")),
        _text(contact.get("last_name")),
        segment.profile.get("address_as"),
    )
    return {
        "greeting": opening,
        "contact": contact_view,
        "segment": {**segment.profile, "name": segment_name, "label": segment.label},
        "practice": settings.practice.model_dump(),
        "sender": settings.sender.model_dump(),
        "step": {
            "number": step_number,
            "template": template,
            "total": len(segment.sequence),
        },
    }


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


@dataclass(frozen=True)
class Thread:
    """Where a message sits in its conversation."""

    subject: str
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()


@dataclass(frozen=True)
class OutboundMessage:
    """A message ready to send: its envelope and its bytes, serialized once."""

    message_id: str
    sender: str
    recipient: str
    subject: str
    data: bytes


def reply_subject(subject: str) -> str:
    """``Re: subject``, without stacking prefixes."""
    return subject if subject.lower().startswith("re:") else f"Re: {subject}"


def build_message(
    settings: Settings,
    rendered: RenderedMessage,
    *,
    to_name: str,
    to_address: str,
    message_id: str,
    thread: Thread,
    date: datetime,
) -> OutboundMessage:
    """The full message (headers and body) for one send.

    Written straight to bytes: the headers a pass's messages share (From, Subject, Date,
    List-Unsubscribe) are folded once by the email package's SMTP policy and reused; the
    per-message ones (To, Message-ID, In-Reply-To, References) are written directly when
    they are plain ASCII that fits a line, else folded by that policy too; the body is
    quoted-printable (``binascii``, in C). ``tests/test_compose.py`` holds the message to the
    one the email package builds field by field."""
    check_header("To", to_name)
    check_header("To", to_address)
    check_header("Message-ID", message_id)
    check_header("In-Reply-To", thread.in_reply_to or "")
    check_header("References", " ".join(thread.references))
    sender = settings.sender
    lines = [
        _shared_line("From", _mailbox(sender.from_name, sender.from_address)),
        _own_line("To", _mailbox(to_name, to_address)),
        _shared_line("Subject", thread.subject),
        _shared_line("Date", format_datetime(date)),
        _own_line("Message-ID", message_id),
    ]
    if thread.in_reply_to:
        lines.append(_own_line("In-Reply-To", thread.in_reply_to))
        lines.append(_references_line(thread.references))
    lines.append(_shared_line("List-Unsubscribe", _list_unsubscribe(settings)))
    if settings.sending.unsubscribe_url:
        # RFC 8058 one-click: the https URL answers a POST with this body.
        lines.append(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    lines.append(_TEXT_BODY_HEADERS)
    return OutboundMessage(
        message_id=message_id,
        sender=sender.from_address,
        recipient=to_address,
        subject=thread.subject,
        data=b"".join(lines) + body_bytes(rendered.body),
    )


def _mailbox(name: str, address: str) -> str:
    """``Name <address>`` with the name quoted or encoded as needed; an address that isn't
    ASCII (an internationalized domain) through the email package, which ``formataddr``
    refuses."""
    if not name:
        return address
    if address.isascii():
        return formataddr((name, address))
    return str(Address(name, addr_spec=address))


_TEXT_BODY_HEADERS = (
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: text/plain; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
)
_LINE = 78  # RFC 5322 section 2.1.1: lines SHOULD be no longer


def body_bytes(text: str) -> bytes:
    """A text body as quoted-printable UTF-8 with CRLF line ends, ending in one."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    return binascii.b2a_qp(text.replace("\n", "\r\n").encode(), istext=True)


@lru_cache(maxsize=512)
def _shared_line(name: str, value: str) -> bytes:
    """A header line many messages of a pass share (same sender, subject, date), folded once.

    The SMTP policy encodes non-ASCII text (RFC 2047) and folds long lines; its own CR/LF
    guard sits in assignment, which this skips, so the check is made here (header
    injection)."""
    return _folded(name, check_header(name, value))


def _own_line(name: str, value: str) -> bytes:
    """A header line of one message: written as it is when it is ASCII and fits a line, else
    through the SMTP policy like the shared ones (values are checked by the caller)."""
    line = f"{name}: {value}\r\n"
    if len(line) <= _LINE + 2 and line.isascii():
        return line.encode()
    return _folded(name, value)


def _folded(name: str, value: str) -> bytes:
    """A header line as the SMTP policy writes it: non-ASCII encoded (RFC 2047), long lines
    folded; ``value`` already checked."""
    return SMTP.fold_binary(*SMTP.header_store_parse(name, value))


def _references_line(references: Sequence[str]) -> bytes:
    """References: our Message-IDs (ASCII, no spaces), folded between IDs."""
    out, width = "References:", len("References:")
    for reference in references:
        if width + 1 + len(reference) > _LINE and width > len("References:"):
            out += "\r\n"
            width = 0
        out += " " + reference
        width += 1 + len(reference)
    if not out.isascii():
        return _folded("References", " ".join(references))
    return (out + "\r\n").encode()


def _list_unsubscribe(settings: Settings) -> str:
    # RFC 2369: angle-bracketed URIs, mailto first; replies go to the watched inbox.
    uris = [f"<mailto:{settings.sender.from_address}?subject=unsubscribe>"]
    if settings.sending.unsubscribe_url:
        uris.append(f"<{settings.sending.unsubscribe_url}>")
    return ", ".join(uris)


def thread_for(
    step_subject: str | None, threaded: bool, earlier: Sequence[tuple[str, str]]
) -> Thread:
    """The thread of a step, given the (message_id, subject) of earlier sent steps, oldest first."""
    if not threaded or not earlier:
        assert step_subject is not None
        return Thread(subject=step_subject)
    root_subject = earlier[0][1]
    ids = tuple(message_id for message_id, _ in earlier)
    return Thread(subject=reply_subject(root_subject), in_reply_to=ids[-1], references=ids)
