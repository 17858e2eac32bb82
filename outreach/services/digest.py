"""The daily digest to the therapist: yesterday's replies and stage changes, what goes out
today, and what needs attention. Who and what happened, never what anyone wrote."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from outreach.mail.compose import OutboundMessage
from outreach.mail.notices import notice
from outreach.report.build import Attention, build_report
from outreach.services.dispatch import Dispatcher
from outreach.services.forecast import PlannedSend, plan
from outreach.store.models import ContactRow, InboundEventRow, StageChangeRow

MAX_LINES_PER_PART = 30


@dataclass(frozen=True)
class DigestFacts:
    """What a digest tells, gathered from the store for one practice-local day."""

    day: date  # the digest's day; "yesterday" is the day before
    inbound: list[tuple[str, str, str]]  # (contact or sender domain, kind, effect)
    changes: list[tuple[str, str | None, str, str]]  # (contact, from, to, why)
    today: list[PlannedSend]
    attention: list[Attention]


def gather_digest(dispatcher: Dispatcher, now: datetime) -> DigestFacts:
    """Read yesterday's events and today's plan (nothing is written)."""
    settings, store = dispatcher.settings, dispatcher.store
    zone = ZoneInfo(settings.practice.timezone)
    day = now.astimezone(zone).date()
    start = datetime.combine(day - timedelta(days=1), time(), zone)
    end = datetime.combine(day, time(), zone)
    with store.session() as session:
        events = session.execute(
            select(InboundEventRow, ContactRow.email)
            .outerjoin(ContactRow, InboundEventRow.contact_id == ContactRow.id)
            .where(InboundEventRow.received_at >= start, InboundEventRow.received_at < end)
            .order_by(InboundEventRow.received_at)
        ).all()
        inbound = [
            (email or f"(unmatched, {e.sender_domain})", e.kind, e.effect) for e, email in events
        ]
        changes = [
            (email, c.from_stage, c.to_stage, c.reason)
            for c, email in session.execute(
                select(StageChangeRow, ContactRow.email)
                .join(ContactRow, StageChangeRow.contact_id == ContactRow.id)
                .where(StageChangeRow.at >= start, StageChangeRow.at < end)
                .order_by(StageChangeRow.at)
            )
        ]
    today = [p for p in plan(dispatcher, now=now, days=1) if p.at.astimezone(zone).date() == day]
    attention = build_report(store, settings, now=now).attention
    return DigestFacts(day, inbound, changes, today, attention)


def compose_digest(facts: DigestFacts, zone: ZoneInfo) -> tuple[str, list[str]]:
    """The digest's subject and lines (pure)."""
    kinds = Counter(kind for _who, kind, _effect in facts.inbound)
    replies = kinds.get("reply", 0)
    subject = (
        f"outreach {facts.day:%a %d %b}: {replies} repl{'y' if replies == 1 else 'ies'} yesterday, "
        f"{len(facts.today)} to send today"
        + (f", {len(facts.attention)} to look at" if facts.attention else "")
    )
    yesterday = facts.day - timedelta(days=1)
    lines = [f"Yesterday ({yesterday:%A %d %B}):"]
    lines += _part(
        [f"  {kind}: {who} -> {effect}" for who, kind, effect in facts.inbound],
        "  no inbound messages",
    )
    lines += ["", "Stage changes yesterday:"]
    lines += _part(
        [f"  {who}: {old or '-'} -> {new} ({why})" for who, old, new, why in facts.changes],
        "  none",
    )
    lines += ["", f"To send today ({len(facts.today)}):"]
    lines += _part(
        [
            f"  {p.at.astimezone(zone):%H:%M} {p.email} ({p.segment}, step {p.step}: {p.template})"
            for p in facts.today
        ],
        "  nothing due",
    )
    lines += ["", "Needs attention:"]
    lines += _part([f"  {a.kind}: {a.subject}: {a.detail}" for a in facts.attention], "  nothing")
    lines += ["", "Replies themselves are in your inbox; outreach never copies their words."]
    return subject, lines


def digest_message(dispatcher: Dispatcher, now: datetime) -> OutboundMessage:
    """Today's digest, addressed to ``daemon.digest_to`` (else the notices' address)."""
    settings = dispatcher.settings
    subject, lines = compose_digest(
        gather_digest(dispatcher, now), ZoneInfo(settings.practice.timezone)
    )
    return notice(settings, subject, lines, refers_to=None, to=settings.digest_address)


def _part(lines: list[str], empty: str) -> list[str]:
    if not lines:
        return [empty]
    shown = lines[:MAX_LINES_PER_PART]
    more = len(lines) - len(shown)
    return shown + ([f"  ... and {more} more (outreach report, outreach plan)"] if more else [])
