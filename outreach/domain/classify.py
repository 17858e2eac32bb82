"""Classifying an inbound message: a pure function of its raw bytes that never raises.

Kinds: ``reply`` (written by a person), ``out_of_office`` (with the return date when the text
states one), ``auto_reply`` (``reason`` ``left_organization`` when the person has left),
``bounce`` (every failed recipient with its class and reason), ``unsubscribe`` (the writer
asks not to be written to again), ``complaint`` (an abuse report, RFC 5965), ``receipt`` (a
read receipt, or a delivery report saying the message arrived), ``challenge`` (a
challenge-response system asks us to prove we are a person), and ``unclassifiable`` for bytes
that can't be read as a message. ``reasons`` says which header or phrase decided;
``confidence`` is ``low`` when the reading is a guess, and then nothing irreversible follows.

Only the new text of a reply is read for intent (quotes and signatures are cut by
mail-parser-reply, which knows the quote headers of many languages); nothing here logs or
keeps a body. Every value taken from a header is made safe to store: Message-IDs and
addresses hold no control characters, and the Date is an aware UTC time within sane bounds.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from email import message_from_bytes
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from functools import cache, cached_property
from typing import Any

from outreach.domain import auto_replies
from outreach.domain.bounce_reasons import OTHER as OTHER_REASON
from outreach.domain.bounce_reasons import STATUS, FailureReading, read_failure
from outreach.domain.headers import Headers, body_text, header
from outreach.domain.languages import language_of
from outreach.domain.opt_out import SHORT, opt_out_phrase
from outreach.domain.reports import Report, read_notification, read_report
from outreach.domain.return_dates import return_date
from outreach.domain.states import InboundKind

REPLY = InboundKind.REPLY
OUT_OF_OFFICE = InboundKind.OUT_OF_OFFICE
AUTO_REPLY = InboundKind.AUTO_REPLY
BOUNCE = InboundKind.BOUNCE
UNSUBSCRIBE = InboundKind.UNSUBSCRIBE
COMPLAINT = InboundKind.COMPLAINT
RECEIPT = InboundKind.RECEIPT
CHALLENGE = InboundKind.CHALLENGE
UNCLASSIFIABLE = InboundKind.UNCLASSIFIABLE
# flufl.bounce logs each detector it runs, and a traceback (which can quote the message) for
# one that trips on it: neither may reach the journal. Its result is all outreach uses.
logging.getLogger("flufl.bounce").disabled = True

HIGH = "high"
LOW = "low"
LEFT_ORGANIZATION = "left_organization"

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_IDS = 50  # Message-IDs read from one header (a query's IN list holds them)
MAX_RECIPIENTS = 50  # failed recipients kept from one report
MAX_REPLY_TEXT = 4000  # characters of a body searched for its new text (it comes first)
# Characters no stored or logged value may hold: C0 and C1 controls (NUL, CR, LF, VT, FF...),
# the Unicode line and paragraph separators (line breaks to the email package), and lone
# surrogates (undecodable 8-bit header bytes, which no database encoding accepts).
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# RFC 5322 3.6.4 msg-id, loosely: anything but brackets, spaces and unprintables.
_MSG_ID = re.compile(r"<[^<>\s\x00-\x1f\x7f-\x9f\ud800-\udfff]+>")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
MAX_AUTH_RESULTS = 2048  # characters of an Authentication-Results header read
_RESULT = re.compile(r"\s*([A-Za-z0-9_-]+)(?:/[0-9]+)?\s*=\s*([A-Za-z0-9_-]+)")
_COMPLAINT_SUBJECT = re.compile(
    r"^\s*(?:complaint about message from|abuse report|spam complaint|fbl report)",
    re.IGNORECASE,
)
# Who writes non-delivery reports: the local part of their From.
_MAILER = re.compile(
    r"^(?:mailer-daemon|mailer_daemon|mail-daemon|maildaemon|postmaster|post_master|"
    r"microsoftexchange[0-9a-f]*|mail\.?delivery\.?(?:system|subsystem)?|"
    r"mdaemon|nobody-bounce)$",
    re.IGNORECASE,
)
# Display names of non-delivery reports' writers (some send from the null address).
_MAILER_NAME = re.compile(
    r"^(?:mail delivery (?:sub)?system|mailer[- ]daemon|postmaster|mail administrator)$",
    re.IGNORECASE,
)
# Subjects of non-delivery reports, in the languages mail servers write them in.
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery status notification(?! \(success)|delivery "
    r"(?:has )?failed|delivery failure|delivery problem|returned mail|failure notice|"
    r"mail delivery (?:failed|system|failure|subsystem)|could not be delivered|"
    r"message not delivered|non[- ]?delivery|not delivered|delivery notification|"
    r"unzustellbar|nicht zustellbar|zustellung fehlgeschlagen|non remis|non distribu|"
    r"[ée]chec de (?:la )?(?:remise|distribution)|no se (?:puede|pudo) entregar|"
    r"no entregado|n[aã]o (?:foi )?entregue|onbestelbaar|niet bezorgd|non recapitabile|"
    r"mancato recapito|niedostarczalne|olevererbar|returned to sender|warning: .*delay",
    re.IGNORECASE,
)
_ANSWER_PREFIX = re.compile(r"^\s*(?:re|aw|sv|vs|antw|r|res|rif|fw|fwd|wg|tr)\s*:", re.IGNORECASE)
# Where a non-delivery report's own words end and the returned message begins.
_RETURNED = re.compile(
    r"^(?:-+ ?(?:original message|this is a copy|the (?:original|returned) message|"
    r"returned message|copy of the message|below this line)|original message headers|"
    r"-+ ?mensaje original|-+ ?ursprüngliche nachricht|-+ ?message d'origine|"
    r".{0,40}(?:original message|message headers|headers) follow|"
    r".{0,40}(?:a copy of|part of) (?:the|your) (?:original )?message (?:follows|is below|below)|"
    r".{0,20}below (?:is|this line is) a copy of (?:the|your) (?:original )?message)",
    re.IGNORECASE | re.MULTILINE,
)
# Where a client starts quoting the message answered: a separator line, an "On ... wrote:"
# line in the languages outreach reads, or an Outlook header block (From: then Sent: or
# Date:, in those languages).
_SPACE = r"[ \t\u00a0\u202f]"  # French Outlook writes "De\u00a0:"
_FROM = r"from|von|de|da|van|från|od"
_SENT = (
    r"sent|gesendet|envoyé|enviad[oa](?: el)?|inviato|verzonden|skickat|wysłano|date|datum|"
    r"data|fecha"
)
_QUOTE_HEADER = re.compile(
    rf"^{_SPACE}*(?:-{{2,}}|_{{5,}}){_SPACE}*(?:original message|mensaje original|"
    r"message d'origine|ursprüngliche nachricht|messaggio originale|oorspronkelijk bericht|"
    r"mensagem original|mail original|forwarded message|weitergeleitete nachricht|"
    r"urspr\S* meddelande|wiadomość oryginalna|on .{5,120} wrote)"
    rf"|^{_SPACE}*(?:on|am|le|el|il|op|em|den|w dniu) .{{5,200}}(?:wrote|schrieb|a écrit|"
    rf"escribió|ha scritto|schreef|escreveu|skrev|napisał)[^\n]{{0,80}}:{_SPACE}*\r?$"
    rf"|^{_SPACE}*\*?(?:{_FROM}){_SPACE}*:\*?{_SPACE}+[^\n]+\n"
    rf"(?:[^\n]*\n){{0,3}}?{_SPACE}*\*?(?:{_SENT}){_SPACE}*:"
    rf"|^{_SPACE}*\*?(?:{_SENT}){_SPACE}*:\*?{_SPACE}+[^\n]+\n"
    rf"(?:[^\n]*\n){{0,3}}?{_SPACE}*\*?(?:{_FROM}){_SPACE}*:",
    re.IGNORECASE | re.MULTILINE,
)
_ADDRESS = re.compile(r"[\w.+'=-]+@[\w-]+(?:\.[\w-]+)+")
# Patterns used on every message are compiled here: the re module's cache holds 512, and the
# email package compiles one for each multipart boundary, so a busy inbox would evict them.
_WHITESPACE = re.compile(r"\s")
_FREE_TEXT = re.compile(r"[@\d]")  # an address or a number: not our pattern's own words
_BRACKETED_ADDRESS = re.compile(r"<([^<>\s]+@[^<>\s]+)>")
_XTEXT_CHAR = re.compile(r"\+([0-9A-Fa-f]{2})")
_RETURNED_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\s]+>)", re.IGNORECASE | re.MULTILINE)
_QUOTED_MESSAGE_ID = re.compile(r"Message-ID:\s*(<[^<>\s]+>)", re.IGNORECASE)


@dataclass(frozen=True)
class Failed:
    """One recipient a bounce says was not reached, and why."""

    address: str
    bounce_class: str  # hard | soft | policy
    reason: str
    status: str | None
    confidence: str


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
    confidence: str = HIGH  # low: a guess; nothing irreversible follows from it
    return_date: date | None = None
    reason: str | None = None  # a bounce's reason; an auto-reply's left_organization
    failed: tuple[Failed, ...] = ()  # a bounce's failed recipients, first as reported
    # Every address a report names (Original- and Final-Recipient differ when the address
    # was rewritten by an alias or a forward; a complaint names the recipient it is about).
    recipients: tuple[str, ...] = ()
    new_address: str | None = None  # where a person who left asks to be written instead
    language: str = ""
    auth_failure: str | None = None  # the practice's provider says the From is not authentic
    auto_submitted: bool = False
    new_text_words: int = 0
    _new_text: str = field(default="", repr=False, compare=False)

    @property
    def new_text(self) -> str:
        """The reply's own words, for rules to read in memory. Never store or log this."""
        return self._new_text

    @property
    def recipient(self) -> str | None:
        """The first failed recipient (the first address named, for other reports)."""
        if self.failed:
            return self.failed[0].address
        return self.recipients[0] if self.recipients else None

    @property
    def status(self) -> str | None:
        return self.failed[0].status if self.failed else None

    @property
    def bounce_class(self) -> str | None:
        return self.failed[0].bounce_class if self.failed else None

    def failure_for(self, address: str) -> Failed | None:
        """The failure the report gives for ``address`` (lower-case), if it names it."""
        return next((f for f in self.failed if f.address == address), None)


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
        message = message_from_bytes(raw[:PARSE_LIMIT])  # compat32: headers read lazily
        found = _classify(_Parsed(message), received)
        failure = _auth_failure(message, authserv_id)
        return replace(found, auth_failure=failure) if failure else found
    except Exception as exc:
        return Classification(
            UNCLASSIFIABLE, (f"can't be parsed as a message: {type(exc).__name__}",)
        )


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
    if not value or len(value) > 320 or _UNPRINTABLE.search(value) or _WHITESPACE.search(value):
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


class _Parsed:
    """A parsed message being classified, and what more than one step reads from it (its
    text, a report's own words, the parts holding a returned original), read once."""

    def __init__(self, message: Message) -> None:
        self.message = message
        self.headers = Headers(message)

    def header(self, name: str) -> str:
        return header(self.headers, name)

    @cached_property
    def text(self) -> str:
        """The message's readable text (its first inline text part)."""
        return body_text(self.message)

    @cached_property
    def prose(self) -> str:
        """A non-delivery report's own words, without the returned message after them."""
        end = _RETURNED.search(self.text)
        return " ".join((self.text[: end.start()] if end else self.text)[:8000].split())

    @cached_property
    def returned(self) -> tuple[tuple[str, Message], ...]:
        """The parts that may hold a returned original (an attached message, or its headers
        alone), with their content types, in the order the message has them."""
        found = []
        for part in self.message.walk():
            kind = part.get_content_type()
            if kind in _RETURNED_TYPES:
                found.append((kind, part))
        return tuple(found)


_ATTACHED_MESSAGE = ("message/rfc822", "message/global")
_ATTACHED_HEADERS = ("text/rfc822-headers", "message/global-headers")
_RETURNED_TYPES = _ATTACHED_MESSAGE + _ATTACHED_HEADERS


def _classify(parsed: _Parsed, received: date) -> Classification:
    message = parsed.message
    sender_pairs = getaddresses([parsed.header("From")])
    sender = _address(sender_pairs[0][1]) if sender_pairs else None
    subject = parsed.header("Subject")
    sent = _sent_at(parsed.header("Date"), received)
    # The newest of a long thread are last in References (RFC 5322 3.6.4).
    refers_to = (
        _ids(parsed.header("In-Reply-To"))[:MAX_IDS] + _ids(parsed.header("References"))[-MAX_IDS:]
    )
    base: dict[str, Any] = {
        "message_id": (_ids(parsed.header("Message-ID")) or (None,))[0],
        "sender": sender,
        "subject": subject,
        "sent_at": sent,
        "refers_to": refers_to,
    }
    report = read_report(message)
    if report is None and _maybe_notification(message):
        report = read_notification(parsed.prose)
    if report is not None:
        return _from_report(parsed, report, base)
    if _COMPLAINT_SUBJECT.search(subject) and _original_senders(parsed):
        # An older feedback loop (Hotmail's): the reported message attached, no ARF part.
        ids = _embedded_ids(parsed)
        reasons = ("an abuse report without a feedback-report part", f"subject {subject!r}")
        recipients = _original_recipients(parsed)
        return Classification(
            COMPLAINT, reasons, recipients=recipients, **{**base, "refers_to": ids}
        )
    name = sender_pairs[0][0] if sender_pairs else ""
    bounce = _prose_bounce(parsed, sender, name, subject)
    if bounce is not None:
        return replace(bounce, **{**base, "refers_to": _embedded_ids(parsed)})
    whole = parsed.text
    text = _new_text(whole)
    content_language = parsed.header("Content-Language")
    language = language_of(f"{subject}\n{text}", content_language)
    base.update(language=language, new_text_words=len(text.split()))
    auto = auto_replies.auto_markers(parsed.headers, subject, answers_ours=bool(refers_to))
    lowered = " ".join(f"{subject}\n{text}".lower().split())
    challenge = auto_replies.CHALLENGE.search(lowered)
    # A person may ask us to "confirm your address" too: only a machine's message, or the
    # words only challenge systems use, make a challenge.
    if challenge and (auto or auto_replies.CHALLENGE_SYSTEM.search(lowered)):
        return Classification(
            CHALLENGE,
            (*auto, f"asks us to prove we are a person: {_phrase(challenge.group(0))}"),
            auto_submitted=bool(auto),
            **base,
        )
    in_subject = opt_out_phrase(_own_subject(subject))
    if auto and not in_subject:  # a mail program's unsubscribe button may mark it automatic
        when = sent.date() if sent else received
        return _automatic(content_language, auto, text or whole, base, when)
    opt_out = in_subject or opt_out_phrase(text)
    if opt_out:
        words = base["new_text_words"]
        return Classification(
            UNSUBSCRIBE,
            (f"{'subject' if in_subject else 'new text'} says {_phrase(opt_out)}",),
            confidence=HIGH if words <= SHORT else LOW,
            _new_text=text,
            **base,
        )
    return Classification(
        REPLY, ("written by a person: no auto-reply or bounce markers",), _new_text=text, **base
    )


def _maybe_notification(message: Message) -> bool:
    """Cheaply: could this be a JSON event (Amazon SES through SNS)? A single text part
    that names a notificationType."""
    if message.is_multipart():
        return False
    payload = message.get_payload()
    return isinstance(payload, str) and "notificationType" in payload[:5000]


def _automatic(
    content_language: str, auto: tuple[str, ...], text: str, base: dict[str, Any], sent: date
) -> Classification:
    """An auto-reply: out of office (with its return date), left the organization, or other."""
    subject = base["subject"]
    lowered = " ".join(f"{subject}\n{text}".lower().split())
    left = auto_replies.LEFT_ORGANIZATION.search(lowered)
    if left:
        return Classification(
            AUTO_REPLY,
            (*auto, f"text says {_phrase(left.group(0))}"),
            reason=LEFT_ORGANIZATION,
            new_address=_address(auto_replies.new_address(text, base["sender"])),
            auto_submitted=True,
            **base,
        )
    away = auto_replies.OUT_OF_OFFICE.search(lowered)
    if away is None:
        return Classification(AUTO_REPLY, auto, auto_submitted=True, **base)
    back = return_date(
        f"{subject}\n{text}",
        sent=sent,
        language=base["language"],
        content_language=content_language,
    )
    return Classification(
        OUT_OF_OFFICE,
        (*auto, f"says {_phrase(away.group(0))}"),
        return_date=back,
        auto_submitted=True,
        **base,
    )


def _phrase(words: str) -> str:
    """A matched phrase for the reasons (which are stored): our patterns' own words, never
    more of the message: a match that spans free text (a name, an address, a number) is
    not quoted."""
    if len(words) > 40 or _FREE_TEXT.search(words) or len(words.split()) > 6:
        return "(a phrase of that kind)"
    return repr(words)


def _own_subject(subject: str) -> str:
    """The subject's own words: "Re: <our subject>" says nothing about intent."""
    return "" if _ANSWER_PREFIX.match(subject) else subject


def _new_text(whole: str) -> str:
    whole = whole[:MAX_REPLY_TEXT]
    quoted = _QUOTE_HEADER.search(whole)
    if quoted is not None:
        # A quote header mail-parser-reply may not know (Zoho's "---- On ... wrote ----",
        # Zimbra's "----- Mail original -----", a localized Outlook block). Quoted with ">"
        # lines, the answer may come after them (bottom-posting): drop the header line only;
        # else the original follows unmarked, and everything from the header on goes.
        after = whole[quoted.end() :].lstrip()
        if after.startswith(">"):
            whole = whole[: quoted.start()] + whole[quoted.end() :]
        else:
            whole = whole[: quoted.start()]
    try:
        text = _latest_reply(whole)
    except Exception:
        text = whole
    # Quoted lines a parser left (a reply written between the quotes keeps them).
    kept = (line for line in text.splitlines() if not line.lstrip().startswith(">"))
    return "\n".join(kept).strip()


def _latest_reply(whole: str) -> str:
    """mail-parser-reply's latest reply in ``whole``. Its quote-header pattern takes about a
    millisecond on a short text, and most texts hold nothing it could match: then its answer
    is its own normalized text (line ends unified, lines stripped), whole."""
    from mailparser_reply import EmailMessage  # noqa: PLC0415 (compiles many patterns)

    normalized: str = EmailMessage(text=whole, languages=list(_REPLY_LANGUAGES)).text
    if _REPLY_HEADER_WORDS.search(normalized) is None:
        return normalized.strip()
    return _reply_parser().parse_reply(whole) or ""


@cache
def _reply_parser() -> Any:
    from mailparser_reply import EmailReplyParser  # noqa: PLC0415 (compiles many patterns)

    return EmailReplyParser(languages=list(_REPLY_LANGUAGES))


_REPLY_LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "pl", "sv")
# What every quote header mail-parser-reply knows in those languages must hold (so a text
# without any has none): a "wrote" word ("On ... wrote:", "Am ... schrieb", "Le ... a
# écrit", "El ... escribió:", "Il ... ha scritto:", "Op ... schreef:", "Dnia ... napisał(a):",
# "Den ... skrev"), a line "From:" (one word, or none, then a colon: its Outlook headers in
# every language), or the dashes of "----- Original Message -----". Matched case-insensitively,
# as the library matches. Adding a language to _REPLY_LANGUAGES means adding its word here.
_REPLY_HEADER_WORDS = re.compile(
    r"wrote:|schrieb|a \u00e9crit|escribi\u00f3:|ha scritto:|schreef:|nades\u0142a\u0142|"
    r"napisa\u0142\(a\)|skrev|-----|^[>* ]*[^\W\d_]*[ ]*:",
    re.IGNORECASE | re.MULTILINE,
)


def _from_report(parsed: _Parsed, report: Report, base: dict[str, Any]) -> Classification:
    ids = tuple(dict.fromkeys(_embedded_ids(parsed) + _envelope_ids(report.message_ids)))
    named = tuple(a for a in map(_address, report.named) if a)[:MAX_RECIPIENTS]
    if report.kind == "receipt":
        refers = tuple(dict.fromkeys(ids + base["refers_to"]))
        reasons = ("a report that the message arrived or was read", report.detail)
        return Classification(RECEIPT, reasons, recipients=named, **{**base, "refers_to": refers})
    if report.kind == "complaint":
        recipients = named or _original_recipients(parsed)
        reasons = ("an abuse report (RFC 5965 feedback-report)", report.detail)
        return Classification(
            COMPLAINT, reasons, recipients=recipients, **{**base, "refers_to": ids}
        )
    failed_list = []
    for failure in report.failures[:MAX_RECIPIENTS]:
        address = _address(failure.address)
        if address is None:
            continue
        reading = failure.reading
        if reading.reason == OTHER_REASON:
            # The block's code says little: the report's own words may say more.
            reading = read_failure(
                reading.status,
                f"{failure.text} {parsed.prose}",
                delayed=failure.delayed,
                gave_up=not failure.delayed,
            )
        failed_list.append(_failed(address, reading))
    failed = tuple(failed_list)
    first = failed[0] if failed else None
    why: tuple[str, ...] = (
        "a delivery status report (RFC 3464)",
        report.detail,
        *([f"{first.status or 'no status'}: {first.reason}"] if first else []),
    )
    sure = bool(failed) and all(f.confidence == HIGH for f in failed)
    return Classification(
        BOUNCE,
        why,
        confidence=HIGH if sure else LOW,
        reason=first.reason if first else None,
        failed=failed,
        recipients=named,
        **{**base, "refers_to": ids},
    )


def _failed(address: str, reading: FailureReading) -> Failed:
    return Failed(address, reading.bounce_class, reading.reason, reading.status, reading.confidence)


def _prose_bounce(
    parsed: _Parsed, sender: str | None, name: str, subject: str
) -> Classification | None:
    """A non-delivery report without a machine-readable part (Microsoft 365 and qmail texts,
    Proton, old Exchange): flufl.bounce's detectors and X-Failed-Recipients name the
    recipients, the report's own words give the status and reason. ``name``: the From's
    display name."""
    mailer = (sender is not None and _MAILER.match(sender.split("@")[0]) is not None) or (
        _MAILER_NAME.match(name.strip()) is not None
    )
    listed = parsed.header("X-Failed-Recipients")
    titled = _BOUNCE_SUBJECT.search(subject) is not None and not _ANSWER_PREFIX.match(subject)
    if not (mailer or listed or titled):
        return None
    # Who failed, from the surest source to the loosest: the report's own header, the
    # returned original's recipients named in its words, flufl.bounce's detectors for
    # dozens of servers' formats, then any address its first lines name.
    found = [a for _, a in getaddresses([listed])] if listed else []
    prose = parsed.prose
    if not found:
        found = _named_in_prose(prose, _original_recipients(parsed))
    temporary: frozenset[object] | set[object] = frozenset()
    permanent: frozenset[object] | set[object] = frozenset()
    if not found:
        from flufl.bounce import all_failures  # noqa: PLC0415  (loads many detectors)

        try:
            temporary, permanent = all_failures(parsed.message)
        except Exception:
            temporary = permanent = frozenset()
        found = [_decoded(a) for a in (*sorted(permanent, key=str), *sorted(temporary, key=str))]
    loose = False
    if not found:
        ours = _original_senders(parsed)
        found = [a for a in _loose_addresses(prose, sender) if a not in ours]
        loose = True
    addresses = tuple(dict.fromkeys(a for a in map(_address, found) if a))[:MAX_RECIPIENTS]
    # In the order the report names them (a detector returns a set).
    lowered = prose.lower()
    addresses = tuple(
        sorted(addresses, key=lambda a: lowered.find(a) if a in lowered else len(lowered))
    )
    status_match = STATUS.search(prose)
    if not (addresses or status_match or mailer):
        return None  # a subject that merely sounds like one
    delayed = bool(temporary) and not permanent and status_match is None
    reading = _read_words(prose, delayed=delayed)
    failed_list = []
    for address, words in _segments(prose, addresses):
        # Each recipient's own error, where the report lists them one after another.
        own = reading if words == prose else _read_words(words, delayed=delayed)
        if own.reason == OTHER_REASON:
            own = reading
        sure = own.confidence if not loose else LOW
        failed_list.append(Failed(address, own.bounce_class, own.reason, own.status, sure))
    failed = tuple(failed_list)
    reading_first = failed[0] if failed else None
    confidence = HIGH if failed and all(f.confidence == HIGH for f in failed) else LOW
    why = (
        f"from {sender}" if mailer else "X-Failed-Recipients" if listed else f"subject {subject!r}"
    )
    return Classification(
        BOUNCE,
        (
            f"a non-delivery report without a status part ({why})",
            f"{(reading_first or reading).status or 'no status'}: "
            f"{(reading_first or reading).reason}",
        ),
        confidence=confidence,
        reason=(reading_first or reading).reason,
        failed=failed,
        recipients=addresses,
    )


def _read_words(words: str, *, delayed: bool) -> FailureReading:
    """A failure read from a report's words alone: the first status code they give."""
    status = STATUS.search(words)
    return read_failure(status.group(0) if status else None, words, delayed=delayed)


def _segments(prose: str, addresses: tuple[str, ...]) -> list[tuple[str, str]]:
    """Each address with the words from where the report first names it to where it names
    the next one (the whole report for an address it doesn't name, or names alone)."""
    lowered = prose.lower()
    places = sorted((lowered.find(a), a) for a in addresses)
    found = [(at, a) for at, a in places if at >= 0]
    if len(found) < 2:
        return [(a, prose) for a in addresses]
    ends = [at for at, _ in found[1:]] + [len(prose)]
    words = {a: prose[at:end] for (at, a), end in zip(found, ends, strict=True)}
    return [(a, words.get(a, prose)) for a in addresses]


def _decoded(address: object) -> str:
    return address.decode("utf-8", "replace") if isinstance(address, bytes) else str(address)


def _named_in_prose(prose: str, sent_to: tuple[str, ...]) -> list[str]:
    """Addresses the report's words name that our returned message was sent to."""
    named = {a.lower().strip(".") for a in _ADDRESS.findall(prose)}
    return [a for a in sent_to if a in named]


_NOT_RECIPIENT = re.compile(
    r"(?i)(?:message-id|from|return-path|reply-to|sender|references|in-reply-to)\s*:?\s*"
    r"(?:\"[^\"]*\"\s*)?<?[^\s<>]+@[^\s<>]+>?"
)


def _loose_addresses(prose: str, sender: str | None) -> list[str]:
    """The addresses a report's words name, when nothing better says who failed: not its
    writer's, nor a mail system's; none when it names many (a list of help addresses)."""
    # Not the returned message's own headers, nor the "received ... from <us>" line.
    prose = _NOT_RECIPIENT.sub(" ", prose[:1000])
    bracketed = _BRACKETED_ADDRESS.findall(prose)
    found = [
        a.lower().strip(".")
        for a in bracketed or _ADDRESS.findall(prose)
        if a.lower() != sender and not _MAILER.match(a.split("@")[0])
    ]
    distinct = list(dict.fromkeys(found))
    return distinct if len(distinct) <= 3 else []


def _original_recipients(parsed: _Parsed) -> tuple[str, ...]:
    """The To and Cc of the returned original (attached or its headers)."""
    return _original_addresses(parsed, ("To", "Cc"))


def _original_senders(parsed: _Parsed) -> tuple[str, ...]:
    """The From and Sender of the returned original: us, never a failed recipient."""
    return _original_addresses(parsed, ("From", "Sender", "Return-Path"))


def _original_addresses(parsed: _Parsed, names: tuple[str, ...]) -> tuple[str, ...]:
    found: list[str] = []
    for kind, part in parsed.returned:
        if kind in _ATTACHED_MESSAGE and part.is_multipart():
            for inner in part.get_payload():
                found += [a for _, a in getaddresses([header(inner, n) for n in names])]
        elif kind in _ATTACHED_HEADERS:
            payload = part.get_payload(decode=True)
            text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
            for name in names:
                match = _field_line(name).search(text)
                if match:
                    found += [a for _, a in getaddresses([" ".join(match.group(1).split())])]
    return tuple(dict.fromkeys(a for a in map(_address, found) if a))[:MAX_RECIPIENTS]


@cache
def _field_line(name: str) -> re.Pattern[str]:
    """A header field of that name in a text of headers, with its folded lines."""
    return re.compile(rf"^{name}:\s*(.+(?:\n[ \t].+)*)", re.IGNORECASE | re.MULTILINE)


def _envelope_ids(values: tuple[str, ...]) -> tuple[str, ...]:
    """Our Message-ID, if we gave it as the ENVID that Original-Envelope-Id returns (RFC 3464
    2.2.1, decoded from xtext, RFC 3461 4), or the MDN's Original-Message-ID."""
    found: list[str] = []
    for value in values:
        text = _XTEXT_CHAR.sub(lambda m: chr(int(m.group(1), 16)), value.strip())
        found += _ids(text) or (_ids(f"<{text}>") if text else ())
    return tuple(found)


def _embedded_ids(parsed: _Parsed) -> tuple[str, ...]:
    """Message-IDs of the original message inside a bounce (its headers or whole copy)."""
    found: list[str] = []
    for kind, part in parsed.returned:
        if kind in _ATTACHED_MESSAGE and part.is_multipart():
            for inner in part.get_payload():
                found += _ids(header(inner, "Message-ID"))
        elif kind in _ATTACHED_HEADERS:
            text = part.get_payload(decode=True) or b""
            if not isinstance(text, bytes):
                continue
            match = _RETURNED_MESSAGE_ID.search(text)
            if match:
                found += _ids(match.group(1).decode("ascii", "replace"))
    if not found:
        # A non-standard bounce quotes the original in its text (qmail's "copy of the message").
        text = parsed.text
        found += _ids(" ".join(_QUOTED_MESSAGE_ID.findall(text)))
    return tuple(dict.fromkeys(found[:MAX_IDS]))


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
    "CHALLENGE",
    "COMPLAINT",
    "HIGH",
    "LEFT_ORGANIZATION",
    "LOW",
    "OUT_OF_OFFICE",
    "RECEIPT",
    "REPLY",
    "UNCLASSIFIABLE",
    "UNSUBSCRIBE",
    "Classification",
    "Failed",
    "classify",
    "printable",
]
