"""The daily digest to the therapist: yesterday's replies and stage changes, what goes out
today, and what needs attention. Who and what happened, in words, never what anyone wrote and
no Message-IDs (a person can't read them; the report and `outreach inbox review` show them)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from outreach.domain.sequencing import step_name
from outreach.mail.compose import OutboundMessage
from outreach.mail.notices import Source, headline, notice, plural, readable_effect
from outreach.report.build import Attention, build_report
from outreach.services.dispatch import Dispatcher
from outreach.services.forecast import plan
from outreach.services.workflow import source_of
from outreach.store.models import ContactRow, InboundEventRow, StageChangeRow

MAX_LINES_PER_PART = 30


@dataclass(frozen=True)
class Heard:
    """One inbound message of the day."""

    kind: str
    source: Source | None  # None: no contact matches
    sender_domain: str
    effect: str


@dataclass(frozen=True)
class Moved:
    """One stage change of the day."""

    source: Source
    from_stage: str | None
    to_stage: str
    why: str


@dataclass(frozen=True)
class Outgoing:
    """One email planned for today."""

    at: datetime
    step: str  # "Intro", "Follow-up 1"
    source: Source


@dataclass(frozen=True)
class DigestFacts:
    """What a digest tells, gathered from the store for one practice-local day."""

    day: date  # the digest's day; "yesterday" is the day before
    inbound: list[Heard]
    changes: list[Moved]
    today: list[Outgoing]
    attention: list[Attention]


def gather_digest(dispatcher: Dispatcher, now: datetime) -> DigestFacts:
    """Read yesterday's events and today's plan (nothing is written)."""
    settings, store = dispatcher.settings, dispatcher.store
    zone = ZoneInfo(settings.practice.timezone)
    day = now.astimezone(zone).date()
    start = datetime.combine(day - timedelta(days=1), time(), zone)
    end = datetime.combine(day, time(), zone)
    today = [p for p in plan(dispatcher, now=now, days=1) if p.at.astimezone(zone).date() == day]
    with store.session() as session:
        events = session.execute(
            select(InboundEventRow, ContactRow)
            .outerjoin(ContactRow, InboundEventRow.contact_id == ContactRow.id)
            .where(InboundEventRow.received_at >= start, InboundEventRow.received_at < end)
            .order_by(InboundEventRow.received_at)
        ).all()
        inbound = [
            Heard(e.kind, source_of(settings, c) if c else None, e.sender_domain, e.effect)
            for e, c in events
        ]
        changes = [
            Moved(source_of(settings, c), change.from_stage, change.to_stage, change.reason)
            for change, c in session.execute(
                select(StageChangeRow, ContactRow)
                .join(ContactRow, StageChangeRow.contact_id == ContactRow.id)
                .where(StageChangeRow.at >= start, StageChangeRow.at < end)
                .order_by(StageChangeRow.at)
            )
        ]
        emails = {p.email for p in today}
        by_email = {
            c.email: c
            for c in session.scalars(select(ContactRow).where(ContactRow.email.in_(emails)))
        }
        outgoing = [
            Outgoing(
                p.at,
                step_name(p.step - 1, p.template),
                source_of(settings, by_email[p.email])
                if p.email in by_email
                else Source(p.email, p.email, p.email, None, p.segment),
            )
            for p in today
        ]
    attention = build_report(store, settings, now=now).attention
    return DigestFacts(day, inbound, changes, outgoing, attention)


def compose_digest(facts: DigestFacts, zone: ZoneInfo) -> tuple[str, list[str]]:
    """The digest's subject and lines (pure)."""
    kinds = Counter(heard.kind for heard in facts.inbound)
    day = facts.day
    subject = (
        f"outreach digest for {day:%a} {day.day} {day:%b}: "
        f"{plural(kinds.get('reply', 0), 'reply')} yesterday, "
        f"{plural(len(facts.today), 'email')} to send today"
        + (f", {plural(len(facts.attention), 'thing')} to look at" if facts.attention else "")
    )
    yesterday = day - timedelta(days=1)
    lines = [f"Yesterday ({yesterday:%A} {yesterday.day} {yesterday:%B}):"]
    lines += _part([f"  {_heard(h)}" for h in facts.inbound], "  No messages came in.")
    lines += ["", "Stage changes yesterday:"]
    lines += _part([f"  {_moved(m)}" for m in facts.changes], "  None.")
    lines += ["", f"To send today ({len(facts.today)}):"]
    lines += _part(
        [
            f"  {o.at.astimezone(zone):%H:%M}  {o.step} to {o.source.name} ({o.source.segment})"
            for o in facts.today
        ],
        "  Nothing is due.",
    )
    lines += ["", "Needs attention:"]
    attention = []
    for a in facts.attention:
        attention.append(f"  {a.kind}: {a.subject}: {a.detail}")
        attention += [f"    -> {a.command}"] if a.command else []
    lines += _part(attention, "  Nothing.")
    lines += ["", "Replies themselves are in your inbox; outreach never copies their words."]
    return subject, lines


def digest_message(dispatcher: Dispatcher, now: datetime) -> OutboundMessage:
    """Today's digest, addressed to ``daemon.digest_to`` (else the notices' address)."""
    settings = dispatcher.settings
    subject, lines = compose_digest(
        gather_digest(dispatcher, now), ZoneInfo(settings.practice.timezone)
    )
    return notice(settings, subject, lines, refers_to=None, to=settings.digest_address)


def _moved(moved: Moved) -> str:
    who = f"{moved.source.name} ({moved.source.segment})"
    why = readable_effect(moved.why)
    if moved.from_stage is None:
        return f"{who}: added as {moved.to_stage} ({why})"
    return f"{who}: {moved.from_stage} -> {moved.to_stage} ({why})"


def _heard(heard: Heard) -> str:
    effect = readable_effect(heard.effect)
    if heard.source is not None:
        return f"{headline(heard.kind, heard.source)}: {effect}"
    sender = f"someone at {heard.sender_domain}" if heard.sender_domain else "an unknown sender"
    if heard.kind == "unprocessable":
        return (
            f"A message from {sender} could not be handled {effect.removeprefix('unprocessable ')}"
        )
    what = heard.kind.replace("_", " ").capitalize()
    return f"{what} from {sender} (no contact matches): {effect}"


def _part(lines: list[str], empty: str) -> list[str]:
    if not lines:
        return [empty]
    shown = lines[:MAX_LINES_PER_PART]
    more = len(lines) - len(shown)
    return shown + ([f"  ... and {more} more (outreach report, outreach plan)"] if more else [])
