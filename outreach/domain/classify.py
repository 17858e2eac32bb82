"""Classifying an inbound message: a pure function of its raw bytes that never raises.

Kinds: ``reply`` (written by a person), ``out_of_office`` (with the return date when the text
states one), ``auto_reply``, ``bounce`` (with recipient, status and hard/soft/policy class),
``unsubscribe`` (an opt-out in the subject or the new, unquoted text), and ``unclassifiable``
for bytes that can't be read as a message. ``reasons`` says which header or phrase decided.

Only the new text of a reply is looked at (quotes and signatures are cut by
email-reply-parser); nothing here logs or keeps a body. Every value taken from a header is
made safe to store: Message-IDs and addresses hold no control characters, and the Date is an
aware UTC time within sane bounds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
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

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_IDS = 50  # Message-IDs read from one header (a query's IN list holds them)
# Characters no stored or logged value may hold: C0 and C1 controls (NUL, CR, LF, VT, FF...),
# the Unicode line and paragraph separators (line breaks to the email package), and lone
# surrogates (undecodable 8-bit header bytes, which no database encoding accepts).
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# RFC 5322 3.6.4 msg-id, loosely: anything but brackets, spaces and unprintables.
_MSG_ID = re.compile(r"<[^<>\s\x00-\x1f\x7f-\x9f\ud800-\udfff]+>")
_STATUS = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}(?![0-9.])")  # RFC 3463 3.1
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
MAX_AUTH_RESULTS = 2048  # characters of an Authentication-Results header read
MAX_RETURN_TEXT = 20_000  # characters of an out-of-office text searched for a return date
_RESULT = re.compile(r"\s*([A-Za-z0-9_-]+)(?:/[0-9]+)?\s*=\s*([A-Za-z0-9_-]+)")

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
    # Every address the report names for it (Original- and Final-Recipient differ when the
    # address was rewritten by an alias or a forward).
    recipients: tuple[str, ...] = ()
    status: str | None = None  # RFC 3464 Status, e.g. 5.1.1
    bounce_class: str | None = None  # hard | soft | policy
    auth_failure: str | None = None  # the practice's provider says the From is not authentic
    auto_submitted: bool = False
    new_text_words: int = 0
    _new_text: str = field(default="", repr=False, compare=False)

    @property
    def new_text(self) -> str:
        """The reply's own words, for rules to read in memory. Never store or log this."""
        return self._new_text


# What a message says about itself is in its first megabyte: the headers, the text someone
# wrote, a bounce's report and returned headers all come before any attachment. Parsing the
# rest would cost about eight times an attachment's size in memory (the email package keeps
# every line), so it is left unread; a part cut short is only a parser defect.
PARSE_LIMIT = 1024 * 1024


def classify(raw: bytes, *, received: date, authserv_id: str = "") -> Classification:
    """Classify raw message bytes received on ``received`` (the reference for a return date
    written without a year, when the message has no Date). ``authserv_id`` names the
    practice's provider, whose Authentication-Results alone are read (empty: none are).
    Never raises: unreadable input is ``unclassifiable``."""
    try:
        message = message_from_bytes(raw[:PARSE_LIMIT], policy=policy.default)
        found = _classify(message, received)
        failure = _auth_failure(message, authserv_id)
        return replace(found, auth_failure=failure) if failure else found
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
    return tuple(_MSG_ID.findall(value))


def printable(text: str, limit: int) -> str:
    """``text`` on one line, safe to store and log: unprintables replaced, at most ``limit``
    characters."""
    return _UNPRINTABLE.sub("\ufffd", text)[:limit]


def _address(value: str | None) -> str | None:
    """An address, lower-cased; None when it can't be one: over RFC 5321's 320 characters
    (4.5.3.1), or holding spaces or unprintables."""
    value = (value or "").strip().lower()
    if not value or len(value) > 320 or _UNPRINTABLE.search(value) or re.search(r"\s", value):
        return None
    return value


def _sent_at(value: str, received: date) -> datetime | None:
    """The Date header as an aware UTC time, clamped to between 1970 and the day after the
    message was received: a clock far off, or a year 9999, must not reach the store."""
    if not value:
        return None
    try:
        sent = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    latest = datetime.combine(received + timedelta(days=2), time(), UTC)
    if sent.tzinfo is None:
        # RFC 5322 3.3: "-0000" is UTC from a sender that doesn't know its own offset.
        sent = sent.replace(tzinfo=UTC)
    try:
        sent = sent.astimezone(UTC)
    except OverflowError:  # the offset carries it past year 9999
        return latest
    return min(max(sent, EPOCH), latest)


def _classify(message: Message, received: date) -> Classification:
    sender_pairs = getaddresses([_header(message, "From")])
    sender = _address(sender_pairs[0][1]) if sender_pairs else None
    subject = _header(message, "Subject")
    sent = _sent_at(_header(message, "Date"), received)
    # The newest of a long thread are last in References (RFC 5322 3.6.4).
    refers_to = (
        _ids(_header(message, "In-Reply-To"))[:MAX_IDS]
        + _ids(_header(message, "References"))[-MAX_IDS:]
    )
    base: dict[str, Any] = {
        "message_id": (_ids(_header(message, "Message-ID")) or (None,))[0],
        "sender": sender,
        "subject": subject,
        "sent_at": sent,
        "refers_to": refers_to,
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
        "recipient": _address(failed[0]),
        "recipients": tuple(a for a in map(_address, failed) if a),
        "bounce_class": "hard" if hard else "soft",
        "refers_to": _embedded_ids(message),
    }


def _dsn(message: Any) -> dict[str, object]:
    recipient, status, action = None, None, None
    envelope_ids: tuple[str, ...] = ()
    named: list[str] = []
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        for block in part.get_payload() if part.is_multipart() else []:
            envelope_ids += _envelope_ids(str(block.get("Original-Envelope-Id", "")))
            for header in ("Original-Recipient", "Final-Recipient"):
                value = str(block.get(header, "") or "")
                address = _address(value.rsplit(";", maxsplit=1)[-1].strip().strip("<>"))
                if value and address:
                    named.append(address)
            final = str(block.get("Final-Recipient", "") or block.get("Original-Recipient", ""))
            if final and recipient is None:
                recipient = _address(final.rsplit(";", maxsplit=1)[-1].strip().strip("<>"))
                found_status = _STATUS.match(str(block.get("Status", "")).strip())
                status = found_status.group(0) if found_status else None
                action = printable(str(block.get("Action", "")).strip().lower(), 40) or None
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
        "recipients": tuple(dict.fromkeys(named)),
        "status": status,
        "bounce_class": klass or "hard",
        "refers_to": tuple(dict.fromkeys(_embedded_ids(message) + envelope_ids)),
    }


def _envelope_ids(value: str) -> tuple[str, ...]:
    """Our Message-ID, if we gave it as the ENVID that Original-Envelope-Id returns (RFC 3464
    2.2.1), decoded from xtext (RFC 3461 4)."""
    text = re.sub(r"\+([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), value.strip())
    return _ids(text) or (_ids(f"<{text}>") if text else ())


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
                found += _ids(match.group(1).decode("ascii", "replace"))
    if not found:
        # A non-standard bounce quotes the original in its text (qmail's "copy of the message").
        text = _plain_text(message)
        found += _ids(" ".join(re.findall(r"Message-ID:\s*(<[^<>\s]+>)", text, re.IGNORECASE)))
    return tuple(dict.fromkeys(found[:MAX_IDS]))


def _return_date(text: str, reference: date) -> date | None:
    # Spaces folded first: on a run of them the pattern's \s* would backtrack for each.
    match = _RETURN.search(" ".join(text[:MAX_RETURN_TEXT].split()))
    if match is None:
        return None
    raw = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", match.group("date").replace(",", " "))
    raw = re.sub(r"\bof\b", " ", raw)
    raw = " ".join(raw.replace(".", " ").split())
    for fmt in ("%Y-%m-%d", "%m/%d/%Y", "%m/%d/%y", "%B %d %Y", "%b %d %Y", "%d %B %Y", "%d %b %Y"):
        try:
            back = datetime.strptime(raw, fmt).date()
        except ValueError:
            continue
        # A return more than a year away is a typo or a trap (9999-12-31 overflows the
        # calendar); the configured pause applies instead.
        return back if abs((back - reference).days) <= 366 else None
    for fmt in ("%m/%d", "%B %d", "%b %d", "%d %B", "%d %b"):
        try:
            partial = datetime.strptime(f"{raw} {reference.year}", f"{fmt} %Y").date()
        except ValueError:
            continue
        # No year given: the next such date on or after the message (a December note
        # saying "back January 5" means next year).
        return partial if partial >= reference else partial.replace(year=reference.year + 1)
    return None


def _auth_failure(message: Message, authserv_id: str) -> str | None:
    """Why the practice's own provider found the From not authentic, if it did (DMARC fails,
    or SPF and DKIM both fail). Only the topmost Authentication-Results naming its authserv-id
    is read: the provider adds its own on top, and any other, or any below, may be the
    sender's own (RFC 8601 5)."""
    if not authserv_id:
        return None
    try:
        stamps = [str(value) for value in message.get_all("Authentication-Results") or []]
    except Exception:
        return None
    for stamp in stamps:
        # Cheap checks first: a sender controls these headers, and quoted strings parsed over
        # a long one cost time growing with the square of its length.
        if authserv_id.lower() not in stamp.split(";", 1)[0].lower():
            continue
        server, results = _auth_results(stamp[:MAX_AUTH_RESULTS])
        if server != authserv_id.lower():
            continue
        dkim = results.get("dkim", [])
        if "fail" in results.get("dmarc", []):  # RFC 7489 11.2
            verdict = "dmarc=fail"
        elif "fail" in results.get("spf", []) and "fail" in dkim and "pass" not in dkim:
            verdict = "spf=fail, dkim=fail"
        else:
            return None
        return f"{authserv_id} says the From fails authentication ({verdict})"
    return None


def _auth_results(value: str) -> tuple[str, dict[str, list[str]]]:
    """An Authentication-Results value's authserv-id and its method=result pairs (RFC 8601
    2.2). Quoted strings go first (a sender-chosen ``smtp.mailfrom`` may quote ";dkim=pass"),
    then comments, which nest (RFC 5322 3.2.2)."""
    first, *infos = _without_comments(_QUOTED.sub('""', value)).split(";")
    server = (first.split() or [""])[0].strip('"').lower()
    results: dict[str, list[str]] = {}
    for info in infos:
        match = _RESULT.match(info)
        if match:
            results.setdefault(match.group(1).lower(), []).append(match.group(2).lower())
    return server, results


def _without_comments(text: str) -> str:
    """``text`` with its (nested) comments made spaces, in one pass: a regex removing the
    innermost first would take time squared on a header of a thousand parentheses."""
    kept, depth = [], 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
            kept.append(" " if not depth else "")
        elif not depth:
            kept.append(char)
    return "".join(kept)


__all__ = [
    "AUTO_REPLY",
    "BOUNCE",
    "OUT_OF_OFFICE",
    "REPLY",
    "UNCLASSIFIABLE",
    "UNSUBSCRIBE",
    "Classification",
    "classify",
    "printable",
]
