"""``outreach demo``: the whole loop in about a minute, on a mail setup that lives in one folder.

An SMTP server in this process (aiosmtpd) delivers every message into a Maildir per recipient;
the practice's inbox is a Maildir too, read by the same ``[inbound] maildir`` source production
can use. The real dispatcher, inbox processor and rules run on an accelerated clock (business
days pass in seconds) while a few sources react as people do: two replies, an out-of-office,
a bounce report, an opt-out, and later a referral. Nothing in the core knows it is a demo.

The narration is one sentence a line, in the words the notices and the report use; an import
held for review (``[sending] hold_new``, as ``init`` writes it) is approved at once, as
``outreach approve --all`` does, so the loop runs.
"""

from __future__ import annotations

import asyncio
import mailbox
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from outreach.config import Settings, load_config
from outreach.domain.sequencing import step_name
from outreach.errors import ConfigError
from outreach.mail.notices import Source, headline, plural, readable_effect
from outreach.runtime.init import STARTER, Answers, render_config, set_value
from outreach.runtime.parts import build_parts
from outreach.services.contacts import Contact, import_contacts, list_contacts
from outreach.services.dispatch import SendLine
from outreach.services.review import approve
from outreach.services.workflow import record_referral
from outreach.store.database import Store, open_store

ZONE = ZoneInfo("America/New_York")
PRACTICE = Answers(
    practice_name="Calm Harbor Counseling",
    therapist="Maya Lindqvist",
    ideal_client="adults and teens with anxiety disorders",
    method="mindfulness-based cognitive therapy",
    result="better coping skills and fewer anxiety symptoms",
    postal_address="120 Harbor Street, Suite 4, Portland, ME 04101",
    sender="maya@calmharbor.example.com",
    smtp_host="127.0.0.1",
    imap_host="127.0.0.1",
    timezone="America/New_York",
)
STEP_MINUTES = 10
DAYS = 24  # calendar days simulated: enough for both follow-ups


@dataclass(frozen=True)
class Reaction:
    """What a source does after our first email reaches it."""

    after: timedelta
    kind: str  # reply | out_of_office | bounce | unsubscribe
    text: str = ""


REACTIONS = {
    "alma.reyes@northbaypsych.example.com": Reaction(
        timedelta(hours=3),
        "reply",
        "Thank you, this is timely. I have a patient I'd like to refer; please send your "
        "availability.",
    ),
    "jonah.whitfield@northbaypsych.example.com": Reaction(
        timedelta(days=1, hours=2), "reply", "Thanks for reaching out. I'll keep your name on file."
    ),
    "priya.natarajan@lincolnmiddle.example.org": Reaction(timedelta(minutes=1), "out_of_office"),
    "tom.beaulieu@lincolnmiddle.example.org": Reaction(timedelta(minutes=5), "bounce"),
    "grace.okafor@stmarkschurch.example.org": Reaction(
        timedelta(days=2), "unsubscribe", "Please remove me from your list. Thank you."
    ),
}
REFERRAL_FROM = ("alma.reyes@northbaypsych.example.com", timedelta(days=7))


class DeliveryHandler:
    """aiosmtpd handler: each accepted message goes into its recipient's Maildir."""

    def __init__(self, mail: Path) -> None:
        self.mail = mail

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or envelope.content
        for recipient in envelope.rcpt_tos:
            box = mailbox.Maildir(self.mail / recipient.lower(), create=True)
            box.add(data)
        return "250 OK: delivered to the demo's Maildir"


@dataclass
class Demo:
    """One run: its folder, its store and the simulated clock."""

    root: Path
    say: Callable[[str], None]
    settings: Settings = field(init=False)
    store: Store = field(init=False)
    pending: list[tuple[datetime, bytes]] = field(default_factory=list)
    final: list[tuple[str, str, str, str]] = field(default_factory=list)
    now: datetime = field(init=False)

    @property
    def mail(self) -> Path:
        return self.root / "mail"

    @property
    def practice_inbox(self) -> Path:
        """The practice's own address's Maildir: replies, bounces and notices land there."""
        return self.mail / PRACTICE.sender

    # --- setting up -------------------------------------------------------------------------

    def write_config(self, port: int) -> Path:
        config = self.root / "config" / "outreach.toml"
        config.parent.mkdir(parents=True)
        text = render_config(PRACTICE)
        text = set_value(text, "smtp", "security", "none")  # a server in this very process
        text = set_value(text, "smtp", "username", "")
        text = text.replace("\nport = 587 ", f"\nport = {port} ", 1)
        text = text.replace(
            "\npoll_seconds = 60 ",
            f'\nmaildir = "../mail/{PRACTICE.sender}"  # the demo\'s inbox: a local Maildir\n'
            "poll_seconds = 60 ",
            1,
        )
        config.write_text(text, encoding="utf-8")
        with resources.as_file(STARTER / "templates") as templates:
            shutil.copytree(templates, self.root / "templates")
        self.mail.mkdir()
        mailbox.Maildir(self.practice_inbox, create=True)
        return config

    def start_clock(self) -> datetime:
        """The next Monday, 08:30 at the practice."""
        today = datetime.now(ZONE).date()
        monday = today + timedelta(days=(7 - today.weekday()) % 7 or 7)
        return datetime.combine(monday, time(8, 30), ZONE)

    # --- the sources' side ------------------------------------------------------------------

    def react(self, sent: SendLine) -> None:
        """Schedule a source's reaction to our first email, as the demo's script says."""
        reaction = REACTIONS.get(sent.email)
        if sent.step != 1 or reaction is None:
            return
        when = self.now + reaction.after
        self.pending.append((when, self.reaction_message(sent, reaction, when)))

    def reaction_message(self, sent: SendLine, reaction: Reaction, when: datetime) -> bytes:
        practice = self.settings.sender.from_address
        if reaction.kind == "bounce":
            return bounce_report(practice, sent, when)
        message = EmailMessage()
        message["Date"] = format_datetime(when)
        message["Message-ID"] = make_msgid(domain=sent.email.rpartition("@")[2])
        message["From"] = sent.email
        message["To"] = practice
        message["Subject"] = f"Re: {sent.subject}"
        message["In-Reply-To"] = sent.message_id
        message["References"] = sent.message_id
        if reaction.kind == "out_of_office":
            back = (when + timedelta(days=7)).date()
            message.replace_header("Subject", f"Out of Office: {sent.subject}")
            message["Auto-Submitted"] = "auto-replied"
            message.set_content(
                f"I am out of the office and will return on {back:%B} {back.day}, {back:%Y}.\n"
            )
        else:
            message.set_content(reaction.text + "\n")
        return message.as_bytes()

    def arrive(self) -> None:
        """Messages whose time has come land in the practice's Maildir."""
        inbox = mailbox.Maildir(self.practice_inbox, create=False)
        for when, raw in sorted(p for p in self.pending if p[0] <= self.now):
            inbox.add(raw)
            self.pending.remove((when, raw))

    # --- running ----------------------------------------------------------------------------

    def run(self, port: int) -> None:
        config = self.write_config(port)
        self.settings = load_config(config)
        self.store = open_store(self.settings.database_url)
        self.now = self.start_clock()
        self.say(
            f"outreach demo in {self.root}: an SMTP server in this process delivers into "
            "Maildirs there, and simulated business days pass in seconds."
        )
        csv = (STARTER / "contacts.csv").read_bytes()
        summary = import_contacts(
            self.store,
            self.settings.the_pipeline,
            list(self.settings.segments),
            csv,
            source="contacts.csv",
            now=self.now,
        )
        self.say(
            f"{self.stamp()}  Imported {plural(summary.created, 'referral source')} in "
            f"{plural(len(summary.by_segment), 'segment')}; emails go out Mon-Fri "
            "09:00-16:30, at most one a day per organization."
        )
        approved = approve(self.store, self.settings, now=self.now, by="demo", everyone=True)
        if approved.approved:
            self.say(
                f"{self.stamp()}  The import waits for your review; approved all "
                f"{len(approved.approved)}, as `outreach approve --all` does."
            )
        parts = build_parts(self.settings, self.store)  # the config's inbox: the Maildir
        dispatcher, processor, inbox = parts.dispatcher, parts.processor, parts.inbox
        sources = {c.email: self.source(c) for c in list_contacts(self.store)}
        referral_at = self.now + REFERRAL_FROM[1]
        referred = False
        end = self.now + timedelta(days=DAYS)
        while self.now < end:
            report = asyncio.run(dispatcher.run_pass(self.now))
            for line in report.sent:
                label = sources[line.email].segment if line.email in sources else ""
                self.say(f"{self.stamp()}  Sent {self.step(line)} to {line.email} ({label}).")
                self.react(line)
            for line in report.failed:
                self.say(
                    f"{self.stamp()}  Could not send {self.step(line)} to {line.email}: "
                    f"{line.detail}."
                )
            for email in report.finished:
                self.say(f"{self.stamp()}  {email} did not reply after the last follow-up.")
            self.arrive()
            for result in inbox.sync_once(processor, now=lambda: self.now).results:
                if result.contact in sources:
                    what = headline(result.kind, sources[result.contact])
                    self.say(f"{self.stamp()}  {what}: {readable_effect(result.effect)}.")
            if not referred and self.now >= referral_at:
                referred = True
                email = REFERRAL_FROM[0]
                change, ruled = record_referral(
                    self.store,
                    self.settings,
                    parts.smtp,
                    email,
                    received_on=self.now.date(),
                    now=self.now,
                    note="demo: one referral (never a client's name)",
                )
                moved = f"; they are now {change.to_stage}" if change else ""
                rules = readable_effect(ruled)
                self.say(
                    f"{self.stamp()}  Recorded a referral from {email}{moved}"
                    + (f"; {rules}" if rules else "")
                    + "."
                )
            self.now = self.tick(self.now)

    def tick(self, now: datetime) -> datetime:
        """The next moment worth simulating: every 10 minutes in office hours, else the next
        morning (nights and weekends pass in one step)."""
        local = now.astimezone(ZONE) + timedelta(minutes=STEP_MINUTES)
        if local.time() > time(17, 0):
            local = datetime.combine(local.date() + timedelta(days=1), time(8, 30), ZONE)
        return local

    def stamp(self) -> str:
        return f"{self.now.astimezone(ZONE):%a %d %b %H:%M}"

    def step(self, line: SendLine) -> str:
        """ "the intro", "follow-up 1", "the thank-you": the step a line sent, as people say
        it."""
        template = "thank_you" if 1000 < line.step <= 2000 else ""  # the demo rule's reply
        name = step_name(line.step - 1, template).lower()
        return f"the {name}" if name in ("intro", "thank-you") else name

    def source(self, contact: Contact) -> Source:
        segment = self.settings.segments.get(contact.segment)
        return Source.of(
            contact.email,
            first_name=contact.first_name,
            last_name=contact.last_name,
            title=contact.title,
            organization=contact.organization,
            segment=segment.label if segment else contact.segment,
        )


def bounce_report(practice: str, sent: SendLine, when: datetime) -> bytes:
    """A delivery status notification (RFC 3464), as the receiving server would send it."""
    domain = practice.rpartition("@")[2]
    remote = sent.email.rpartition("@")[2]
    boundary = "demo-dsn-boundary"
    text = f"""From: Mail Delivery System <MAILER-DAEMON@{domain}>
To: {practice}
Subject: Undelivered Mail Returned to Sender
Date: {format_datetime(when)}
Message-ID: {make_msgid(domain=domain)}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"

--{boundary}
Content-Type: text/plain; charset=us-ascii

Your message to {sent.email} could not be delivered: no such user.

--{boundary}
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.{remote}

Final-Recipient: rfc822; {sent.email}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <{sent.email}>: user unknown

--{boundary}
Content-Type: text/rfc822-headers

From: {practice}
To: {sent.email}
Subject: {sent.subject}
Message-ID: {sent.message_id}

--{boundary}--
"""
    return text.replace("\n", "\r\n").encode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_folder(parent: Path | None) -> Path:
    """A new folder under ``parent``, creating ``parent`` and its parents when missing."""
    try:
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="outreach-demo-", dir=parent))
    except OSError as exc:
        where = parent or Path(tempfile.gettempdir())
        raise ConfigError(
            [f"demo: can't create a folder in {where} ({exc.strerror}); try --dir SOMEWHERE"]
        ) from None


def run_demo(parent: Path | None, say: Callable[[str], None]) -> Demo:
    """Run the demo in a new folder under ``parent`` (default: the system's temp folder)."""
    from aiosmtpd.controller import Controller  # noqa: PLC0415  (only the demo needs it)

    demo = Demo(make_folder(parent), say)
    port = free_port()
    controller = Controller(DeliveryHandler(demo.mail), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        demo.run(port)
        demo.final = pipeline_rows(demo)
    finally:
        controller.stop()
        if hasattr(demo, "store"):
            demo.store.close()
    return demo


def pipeline_rows(demo: Demo) -> list[tuple[str, str, str, str]]:
    """(email, segment, stage, paused until) for every source, by segment."""
    rows = []
    for contact in sorted(list_contacts(demo.store), key=lambda c: (c.segment, c.email)):
        paused = f"{contact.paused_until:%Y-%m-%d}" if contact.paused_until else ""
        rows.append((contact.email, contact.segment, contact.stage, paused))
    return rows
