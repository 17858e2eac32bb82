"""Notices to the therapist (an inbound message's effect, a rule's ``notify``, the daily digest)
and the words they share with the report: who wrote and what outreach did, never what they
wrote, and no Message-ID in the text (a header is where a mail program looks for one).

Decisions:
- A notice's subject names the kind, the source and the segment's label: "Reply from
  Dr. Reyes (Psychiatrists)", "Out of office: ...", "Automatic reply from ...", "Left the
  organization: ...", "Bounced: ...", "Unsubscribed: ...", "Complaint: ...", "Read receipt
  from ...", "Verification request: ...", "Please decide: a message about ...", "Sending
  paused: ...", "Referral from ...", "Stage changed: ...".
- Its body says who (name, organization, address, segment), which of our emails the message
  answers (the step, its subject and when we sent it, in the practice's time zone), what
  outreach did, and the commands to do more. The inbound message's own subject is left out
  with its body: a subject can carry a client's detail as easily as the text.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from outreach.config import Settings
from outreach.domain.fields import full_name
from outreach.domain.sequencing import step_name
from outreach.mail.compose import OutboundMessage, check_header, new_message_id

# What a notice's subject says for each kind, ``{who}`` the source's short name.
HEADLINES: dict[str, str] = {
    "reply": "Reply from {who}",
    "out_of_office": "Out of office: {who}",
    "auto_reply": "Automatic reply from {who}",
    "left": "Left the organization: {who}",
    "bounce": "Bounced: {who}",
    "unsubscribe": "Unsubscribed: {who}",
    "complaint": "Complaint: {who}",
    "receipt": "Read receipt from {who}",
    "challenge": "Verification request: {who}",
    "review": "Please decide: a message about {who}",
    "policy": "Sending paused: {who}'s mail server refused our mail",
    "referral": "Referral from {who}",
    "stage_changed": "Stage changed: {who}",
}
# A Message-ID or a message key in angle brackets (``<abc@example.com>``, ``<sha256-...>``).
_MESSAGE_ID = re.compile(r"\s*<[^<>\s]+>")
_CANCELLED = re.compile(r"(\d+) queued step\(s\) cancelled")
# Written out with header lines up to RFC 5322's 998 characters (section 2.1.1), not folded at
# 78: folded, a subject a little too long for "Subject: " starts on a line of its own, which
# some programs (and the email package's compat32 parser) read with a break or space in front.
# The body is encoded before, under SMTP's 78 (RFC 2045 keeps quoted-printable lines to 76).
HEADERS_UNFOLDED = SMTP.clone(max_line_length=998)


@dataclass(frozen=True)
class Source:
    """The referral source a notice is about, as the therapist knows them."""

    email: str
    name: str  # "Dr. Alma Reyes"; the address when the contact has no name
    short: str  # "Dr. Reyes" (title and last name), else the name
    organization: str | None
    segment: str  # the segment's label: "Psychiatrists"

    @classmethod
    def of(
        cls,
        email: str,
        *,
        first_name: str | None,
        last_name: str | None,
        title: str | None,
        organization: str | None,
        segment: str,
    ) -> Source:
        name = full_name(first_name, last_name)
        titled = " ".join(p for p in (title, name) if p) if name else ""
        short = f"{title} {last_name}" if title and last_name else name
        return cls(email, titled or email, short or email, organization, segment)

    def who(self) -> str:
        """One line: "Dr. Alma Reyes, North Bay Psychiatry <alma@...> (Psychiatrists)"."""
        named = [p for p in (self.name if self.name != self.email else "", self.organization) if p]
        line = f"{', '.join(named)} <{self.email}>" if named else self.email
        return f"{line} ({self.segment})" if self.segment else line


@dataclass(frozen=True)
class Answered:
    """Our email an inbound message answers."""

    step: str  # "Intro", "Follow-up 1" (``step_name``)
    subject: str
    sent_at: datetime | None  # in the practice's time zone


def headline(kind: str, source: Source) -> str:
    """A notice's subject: "Reply from Dr. Reyes (Psychiatrists)"."""
    pattern = HEADLINES.get(kind, kind.replace("_", " ").capitalize() + ": {who}")
    label = f" ({source.segment})" if source.segment else ""
    return pattern.format(who=source.short) + label


def source_notice(
    settings: Settings,
    *,
    kind: str,
    source: Source,
    happened: Sequence[str],
    answered: Answered | None = None,
    done: Sequence[str] = (),
    commands: Sequence[str] = (),
    refers_to: str | None = None,
    stage: str | None = None,
) -> OutboundMessage:
    """A notice about one source: what happened, who, which of our emails it answers, what
    outreach did, and what to run next. UnsafeHeader if the source's name would break the
    Subject."""
    lines = [*happened, "", f"Who: {source.who()}"]
    if stage:
        lines.append(f"Stage now: {stage}")
    if answered is not None:
        when = f", sent {when_local(answered.sent_at)}" if answered.sent_at else ""
        lines.append(f'It answers our {answered.step}, "{answered.subject}"{when}.')
    lines += ["", "What outreach did:"]
    lines += [f"  - {line}" for line in done] or ["  - nothing yet"]
    lines += ["", "To do more:"]
    lines += [f"  {command}" for command in commands] or [
        f"  outreach contacts show {shlex.quote(source.email)}"
    ]
    lines += ["", "The message itself is in your mail program; outreach keeps no message text."]
    return notice(settings, headline(kind, source), lines, refers_to)


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
    ``refers_to`` (our message it is about) threads the notice in a mail program; it is a
    header only.
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
    data = message.as_bytes(policy=HEADERS_UNFOLDED)
    return OutboundMessage(message_id, sender.from_address, to, subject, data)


# --- words shared with the report and the digest ---------------------------------------------


def plural(count: int, word: str, many: str | None = None) -> str:
    """ "1 reply", "2 replies", "0 contacts"."""
    if count == 1:
        return f"1 {word}"
    if many is None:
        many = (
            f"{word[:-1]}ies" if word.endswith("y") and word[-2:-1] not in "aeiou" else f"{word}s"
        )
    return f"{count} {many}"


def when_local(moment: datetime) -> str:
    """ "Mon 2 Mar 2026, 09:05" (the caller gives the practice-local time)."""
    return f"{moment:%a} {moment.day} {moment:%b %Y}, {moment:%H:%M}"


def readable_effect(effect: str) -> str:
    """A recorded effect as a sentence for people: no Message-IDs, no "0 queued steps"."""
    text = _MESSAGE_ID.sub("", effect)
    text = re.sub(r";?\s*0 queued step\(s\) cancelled", "", text)
    text = _CANCELLED.sub(lambda m: f"{plural(int(m.group(1)), 'queued email')} cancelled", text)
    text = re.sub(r"\brule ([\d, ]+) on (\w+)(?: [^:;]*)?:", _rules_phrase, text)
    text = re.sub(r" of \d{4}-\d\d-\d\d \d\d:\d\d", "", text)  # a UTC time: the line has one
    text = re.sub(r"\bstep (\d+) sent", lambda m: f"{step_name(int(m[1]) - 1)} sent", text)
    text = re.sub(r"(?<=[:,] )stage (?=\S)", "moved to ", text.replace(" of undated", ""))
    return re.sub(r"\s+([;:,])", r"\1", text).strip(" ;")


def _rules_phrase(match: re.Match[str]) -> str:
    numbers = [n.strip() for n in match.group(1).split(",") if n.strip()]
    which = "rule" if len(numbers) == 1 else "rules"
    return f"{which} {', '.join(numbers)} ({match.group(2).replace('_', ' ')}):"
