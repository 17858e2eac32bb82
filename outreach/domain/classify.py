"""Classifying an inbound message: a pure function of its raw bytes that never raises.

Kinds: ``reply`` (written by a person), ``out_of_office`` (with the return date when the text
states one), ``auto_reply``, ``bounce`` (with recipient, status and hard/soft/policy class),
``unsubscribe`` (an opt-out in the subject or the new, unquoted text), and ``unclassifiable``
for bytes that can't be read as a message. ``reasons`` says which header or phrase decided.

Only the new text of a reply is looked at (quotes and signatures are cut by
email-reply-parser); nothing here logs or keeps a body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from email_reply_parser import EmailReplyParser

from outreach.domain.states import InboundKind

REPLY = InboundKind.REPLY
OUT_OF_OFFICE = InboundKind.OUT_OF_OFFICE
AUTO_REPLY = InboundKind.AUTO_REPLY
BOUNCE = InboundKind.BOUNCE
UNSUBSCRIBE = InboundKind.UNSUBSCRIBE
UNCLASSIFIABLE = InboundKind.UNCLASSIFIABLE

_AUTO_SUBJECT = re.compile(
    r"^\s*(automatic reply|auto(?:matic)?[- ]?(?:reply|response)|out of (?:the )?office|"
    r"abwesenheitsnotiz|automatische antwort|réponse automatique|respuesta automática|"
    r"risposta automatica|automatisch antwoord|autosvar|resposta automática)\b",
    re.IGNORECASE,
)
_OOO_TEXT = re.compile(
    r"\b(out of (?:the )?office|away from (?:the |my )?office|on (?:annual |parental |"
    r"maternity |medical )?leave|on vacation|on holiday|away until|limited access to (?:my )?"
    r"e-?mail|abwesend|en congés?|de vacaciones)\b",
    re.IGNORECASE,
)
_UNSUBSCRIBE = re.compile(
    r"\b(unsubscribe|remove me|take me off|stop (?:e-?mailing|sending|contacting|writing)|"
    r"do not (?:contact|e-?mail|write)|don'?t (?:contact|e-?mail|write to) me|opt(?:-| )?out|"
    r"no (?:more|further) e-?mails?|not interested,? (?:please )?remove)\b",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"(undeliver|delivery status notification|delivery failure|returned mail|"
    r"failure notice|mail delivery (?:failed|system)|could not be delivered)",
    re.IGNORECASE,
)
_MONTH = (
    r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_RETURN = re.compile(
    r"\b(?:return(?:ing)?|back)(?: to (?:the|my) office| in the office)?\s*(?:on|by|after)?\s*"
    r"(?:(?:mon|tues|wednes|thurs|fri|satur|sun)day,?\s*)?"
    r"(?P<date>" + _MONTH + r"\.?\s+\d{1,2}(?:st|nd|rd|th)?(?:,?\s*\d{4})?"
    r"|\d{1,2}(?:st|nd|rd|th)?\s+(?:of\s+)?" + _MONTH + r"\.?(?:,?\s*\d{4})?"
    r"|\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}(?:/\d{2,4})?)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Classification:
    """What an inbound message is, and why we think so. Holds no body text."""

    kind: str
    reasons: tuple[str, ...]
    message_id: str | None = None
    sender: str | None = None
    subject: str = ""
    sent_at: datetime | None = None
    refers_to: tuple[str, ...] = ()  # In-Reply-To and References, or a bounced original's id
    return_date: date | None = None
    recipient: str | None = None  # the bounced address
    status: str | None = None  # RFC 3464 Status, e.g. 5.1.1
    bounce_class: str | None = None  # hard | soft | policy
    auto_submitted: bool = False
    new_text_words: int = 0
    _new_text: str = field(default="", repr=False, compare=False)

    @property
    def new_text(self) -> str:
        """The reply's own words, for rules to read in memory. Never store or log this."""
        return self._new_text


def classify(raw: bytes, *, received: date) -> Classification:
    """Classify raw message bytes received on ``received`` (the reference for a return date
    written without a year, when the message has no Date). Never raises: unreadable input is
    ``unclassifiable``."""
    try:
        message = message_from_bytes(raw, policy=policy.default)
        return _classify(message, received)
    except Exception as exc:
        return Classification(
            UNCLASSIFIABLE, (f"can't be parsed as a message: {type(exc).__name__}",)
        )


def _header(message: Any, name: str) -> str:
    try:
        value = message.get(name)
    except Exception:
        return ""
    return str(value).strip() if value is not None else ""


def _ids(value: str) -> tuple[str, ...]:
    return tuple(re.findall(r"<[^<>\s]+>", value))


def _classify(message: Message, received: date) -> Classification:
    sender_pairs = getaddresses([_header(message, "From")])
    sender = sender_pairs[0][1].lower() if sender_pairs and sender_pairs[0][1] else None
    subject = _header(message, "Subject")
    try:
        sent = parsedate_to_datetime(_header(message, "Date")) if _header(message, "Date") else None
    except (TypeError, ValueError):
        sent = None
    base: dict[str, Any] = {
        "message_id": (_ids(_header(message, "Message-ID")) or (None,))[0],
        "sender": sender,
        "subject": subject,
        "sent_at": sent,
        "refers_to": _ids(_header(message, "In-Reply-To")) + _ids(_header(message, "References")),
    }
    bounce = _bounce(message, sender, subject)
    if bounce is not None:
        return Classification(BOUNCE, **{**base, **bounce})
    text = _new_text(message)
    auto = _auto_reasons(message, subject)
    if auto:
        ooo = _OOO_TEXT.search(text) or _OOO_TEXT.search(subject)
        if ooo or re.search(r"out of (the )?office|abwesenheit", subject, re.IGNORECASE):
            reasons = (
                *auto,
                f"text says {ooo.group(0)!r}" if ooo else "subject says out of office",
            )
            back = _return_date(text, sent.date() if sent else received)
            return Classification(
                OUT_OF_OFFICE,
                reasons,
                return_date=back,
                auto_submitted=True,
                new_text_words=len(text.split()),
                **base,
            )
        return Classification(AUTO_REPLY, auto, auto_submitted=True, **base)
    opt_out = _UNSUBSCRIBE.search(subject) or _UNSUBSCRIBE.search(text)
    if opt_out:
        where = "subject" if _UNSUBSCRIBE.search(subject) else "new text"
        return Classification(
            UNSUBSCRIBE,
            (f"{where} says {opt_out.group(0)!r}",),
            new_text_words=len(text.split()),
            _new_text=text,
            **base,
        )
    return Classification(
        REPLY,
        ("written by a person: no auto-reply or bounce markers",),
        new_text_words=len(text.split()),
        _new_text=text,
        **base,
    )


def _auto_reasons(message: Message, subject: str) -> tuple[str, ...]:
    reasons = []
    auto_submitted = _header(message, "Auto-Submitted").lower()
    if auto_submitted and auto_submitted != "no":
        reasons.append(f"Auto-Submitted: {auto_submitted} (RFC 3834)")
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
        if _header(message, name):
            reasons.append(f"{name} header")
    precedence = _header(message, "Precedence").lower()
    if precedence in ("bulk", "junk", "auto_reply", "list"):
        reasons.append(f"Precedence: {precedence}")
    if _header(message, "X-MS-Exchange-Generated-Message-Source") or _header(
        message, "X-MS-Exchange-Inbox-Rules-Loop"
    ):
        reasons.append("Exchange auto-generated message header")
    if _AUTO_SUBJECT.search(subject):
        reasons.append(f"subject starts with {_AUTO_SUBJECT.search(subject).group(1)!r}")  # type: ignore[union-attr]
    return tuple(reasons)


def _new_text(message: Message) -> str:
    body = _plain_text(message)
    try:
        return str(EmailReplyParser.parse_reply(body)).strip()
    except Exception:
        return body.strip()


def _plain_text(message: Message) -> str:
    part: Message | None = message
    if isinstance(message, EmailMessage):
        try:
            part = message.get_body(preferencelist=("plain", "html"))
        except Exception:
            part = None
    if part is None:
        return ""
    try:
        content = part.get_content()  # type: ignore[attr-defined]
    except Exception:
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if not isinstance(content, str):
        return ""
    if part.get_content_subtype() == "html":
        content = re.sub(r"<[^>]+>", " ", content)
    return str(content)[:100_000]


def _bounce(message: Message, sender: str | None, subject: str) -> dict[str, object] | None:
    content_type = message.get_content_type()
    report_type = (
        (message.get_param("report-type") or "") if content_type == "multipart/report" else ""
    )
    if content_type == "multipart/report" and str(report_type).lower() == "delivery-status":
        return _dsn(message)
    mailer = sender is not None and sender.split("@")[0] in ("mailer-daemon", "postmaster")
    if not (mailer or _BOUNCE_SUBJECT.search(subject)):
        return None
    from flufl.bounce import all_failures  # noqa: PLC0415  (loads many detectors)

    temporary, permanent = all_failures(message)
    failed = sorted(a.decode() if isinstance(a, bytes) else str(a) for a in permanent | temporary)
    if not failed:
        return None
    hard = bool(permanent)
    return {
        "reasons": (
            "non-standard bounce recognized by flufl.bounce",
            f"from {sender}" if mailer else f"subject {subject!r}",
        ),
        "recipient": failed[0].lower(),
        "bounce_class": "hard" if hard else "soft",
        "refers_to": _embedded_ids(message),
    }


def _dsn(message: Any) -> dict[str, object]:
    recipient, status, action = None, None, None
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        for block in part.get_payload() if part.is_multipart() else []:
            final = str(block.get("Final-Recipient", "") or block.get("Original-Recipient", ""))
            if final and recipient is None:
                recipient = final.rsplit(";", maxsplit=1)[-1].strip().strip("<>").lower()
                status = str(block.get("Status", "")).strip() or None
                action = str(block.get("Action", "")).strip().lower() or None
    klass = None
    if status:
        klass = (
            "soft" if status.startswith("4") else "policy" if status.startswith("5.7") else "hard"
        )
    elif action == "delayed":
        klass = "soft"
    return {
        "reasons": (
            "multipart/report; report-type=delivery-status (RFC 3464)",
            f"Status: {status}" if status else f"Action: {action}",
        ),
        "recipient": recipient,
        "status": status,
        "bounce_class": klass or "hard",
        "refers_to": _embedded_ids(message),
    }


def _embedded_ids(message: Any) -> tuple[str, ...]:
    """Message-IDs of the original message inside a bounce (its headers or whole copy)."""
    found: list[str] = []
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822" and part.is_multipart():
            for inner in part.get_payload():
                found += _ids(_header(inner, "Message-ID"))
        elif kind == "text/rfc822-headers":
            text = part.get_payload(decode=True) or b""
            match = re.search(rb"^Message-ID:\s*(<[^>\s]+>)", text, re.IGNORECASE | re.MULTILINE)
            if match:
                found.append(match.group(1).decode("ascii", "replace"))
    if not found:
        text = _plain_text(message)
        found += re.findall(r"Message-ID:\s*(<[^<>\s]+>)", text, re.IGNORECASE)
    return tuple(dict.fromkeys(found))


def _return_date(text: str, reference: date) -> date | None:
    match = _RETURN.search(text)
    if match is None:
        return None
    raw = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", match.group("date").replace(",", " "))
    raw = re.sub(r"\bof\b", " ", raw)
    raw = " ".join(raw.replace(".", " ").split())
    for fmt in ("%Y-%m-%d", "%m/%d/%Y", "%m/%d/%y", "%B %d %Y", "%b %d %Y", "%d %B %Y", "%d %b %Y"):
        try:
            return datetime.strptime(raw, fmt).date()
        except ValueError:
            continue
    for fmt in ("%m/%d", "%B %d", "%b %d", "%d %B", "%d %b"):
        try:
            partial = datetime.strptime(f"{raw} {reference.year}", f"{fmt} %Y").date()
        except ValueError:
            continue
        # No year given: the next such date on or after the message (a December note
        # saying "back January 5" means next year).
        return partial if partial >= reference else partial.replace(year=reference.year + 1)
    return None


__all__ = [
    "AUTO_REPLY",
    "BOUNCE",
    "OUT_OF_OFFICE",
    "REPLY",
    "UNCLASSIFIABLE",
    "UNSUBSCRIBE",
    "Classification",
    "classify",
]
