"""The report: pipeline funnel per segment, reply rate per step, referral attribution, and what
needs the therapist's attention. Built from the stage history and the delivery ledger.

Decisions:
- The funnel counts how far each contact ever got (new < contacted < replied < engaged <
  referring), from its stage history, so a source moved by hand from new to engaged counts as
  contacted and replied too; extra configured stages count as the funnel stage before them.
- A reply is attributed to the last message sent to that contact before it first reached
  ``replied`` (or beyond): the message that drew the reply.
- ``--since`` selects a cohort: the contacts enrolled (imported) on or after that date.
- Each funnel rate is of the previous stage (replied / contacted...), as the pages say.
- Steps are named as people say them ("Intro", "Follow-up 1", "Thank-you", "Check-ins"); a
  rule's replies are counted per template, check-ins together.
- Dates and times are the practice's (``[practice] timezone``).
- Contacts held for approval are one item per segment with the command that releases them;
  contacts that lack data their templates need are one item each, naming the field.
"""

from __future__ import annotations

import shlex
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select

from outreach.config import Settings
from outreach.domain.fields import full_name
from outreach.domain.pipeline import (
    BOUNCED,
    BUILTIN_STAGES,
    CONTACTED,
    ENGAGED,
    NEW,
    REFERRING,
    REPLIED,
    UNSUBSCRIBED,
)
from outreach.domain.sequencing import NURTURE_STEP_BASE, REPLY_STEP_BASE, step_name
from outreach.domain.states import InboundKind, OutboxState
from outreach.mail.notices import plural, when_local
from outreach.store.database import Store, in_chunks
from outreach.store.ledger import paused_domains, sending_paused
from outreach.store.models import (
    ContactRow,
    InboundEventRow,
    OutboxRow,
    ReferralRow,
    StageChangeRow,
)

FUNNEL = (NEW, CONTACTED, REPLIED, ENGAGED, REFERRING)


UNPROCESSABLE_SHOWN = 20  # the newest unprocessable messages listed under attention...
UNPROCESSABLE_RECENT = timedelta(days=14)  # ...of the last two weeks


@dataclass(frozen=True)
class SegmentFunnel:
    """How far the sources of one segment got."""

    segment: str
    label: str
    contacts: int
    contacted: int
    replied: int
    engaged: int
    referring: int
    referrals: int

    @property
    def rates(self) -> dict[str, float | None]:
        """Conversion between consecutive funnel stages (None where nothing to divide by)."""
        steps = [
            ("contacted", self.contacts, self.contacted),
            ("replied", self.contacted, self.replied),
            ("engaged", self.replied, self.engaged),
            ("referring", self.engaged, self.referring),
        ]
        return {name: (b / a if a else None) for name, a, b in steps}


@dataclass(frozen=True)
class StepStats:
    """Messages sent for one sequence step, and the replies they drew."""

    segment: str
    step: int  # 1-based in the sequence; 1001 a rule's reply, 2001 the check-ins
    template: str
    sent: int
    replies: int
    name: str = ""  # "Intro", "Follow-up 1", "Thank-you", "Check-ins"

    @property
    def reply_rate(self) -> float | None:
        return self.replies / self.sent if self.sent else None


@dataclass(frozen=True)
class Attribution:
    """A source that referred, and the message that first drew a reply from it."""

    email: str
    name: str
    segment: str
    referrals: int
    first_reply_to: str | None  # "Follow-up 1: Re: ..." or None (no emailed reply)


@dataclass(frozen=True)
class Attention:
    """Something the therapist should look at."""

    kind: str
    subject: str
    detail: str
    command: str = ""  # what to run about it
    message_key: str | None = None  # the message it is about, for the report (not notices)


@dataclass
class Report:
    """Everything ``outreach report`` shows."""

    generated_at: datetime
    since: date | None
    segments: list[SegmentFunnel]
    steps: list[StepStats]
    median_hours_to_first_reply: float | None
    bounces: int
    opt_outs: int
    paused: int
    attribution: list[Attribution]
    referrals_by_segment: dict[str, int]
    attention: list[Attention]
    pipeline_over_time: list[tuple[date, dict[str, int]]] = field(default_factory=list)
    timezone: str = "UTC"  # the practice's: every date and time shown is in it

    @property
    def is_empty(self) -> bool:
        return not any(s.contacts for s in self.segments)

    @property
    def local_time(self) -> datetime:
        return self.generated_at.astimezone(ZoneInfo(self.timezone))

    @property
    def active_segments(self) -> list[SegmentFunnel]:
        """The segments with contacts (the others are folded into one line)."""
        return [s for s in self.segments if s.contacts]

    @property
    def empty_segments(self) -> str:
        """ "No contacts yet: Clergy, HR/EAP" or ""."""
        empty = [s.label for s in self.segments if not s.contacts]
        return f"No contacts yet: {', '.join(empty)}." if empty else ""

    @property
    def active_steps(self) -> list[StepStats]:
        """The steps of segments with contacts."""
        active = {s.segment for s in self.active_segments}
        return [s for s in self.steps if s.segment in active]

    def to_json(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [plain(v) for v in value]
            if isinstance(value, datetime | date):
                return value.isoformat()
            return value

        data: dict[str, Any] = plain(asdict(self))
        for segment, funnel in zip(data["segments"], self.segments, strict=True):
            segment["rates"] = funnel.rates
        for step, stats in zip(data["steps"], self.steps, strict=True):
            step["reply_rate"] = stats.reply_rate
        data["rates_are"] = "of the previous stage"
        data["pipeline_over_time"] = [
            {"date": day.isoformat(), "stages": counts} for day, counts in self.pipeline_over_time
        ]
        return data


def _funnel_rank(stage: str, stages: Sequence[str]) -> int:
    """Position in FUNNEL; a configured extra stage ranks as the funnel stage before it;
    exits and no_response are no progress (-1)."""
    if stage in FUNNEL:
        return FUNNEL.index(stage)
    if stage in BUILTIN_STAGES or stage not in stages:
        return -1
    index = stages.index(stage)
    for earlier in reversed(stages[:index]):
        if earlier in FUNNEL:
            return FUNNEL.index(earlier)
    return -1


@dataclass
class _Facts:
    """What the report reads from the store, for one cohort."""

    contacts: dict[int, ContactRow]
    history: dict[int, list[StageChangeRow]] = field(default_factory=lambda: defaultdict(list))
    sends: dict[int, list[OutboxRow]] = field(default_factory=lambda: defaultdict(list))
    referrals: Counter[int] = field(default_factory=Counter)
    unknown: list[tuple[OutboxRow, str]] = field(default_factory=list)
    pause_text: str | None = None
    unprocessable: list[InboundEventRow] = field(default_factory=list)
    paused_domains: dict[str, str] = field(default_factory=dict)
    # Inbound messages the therapist should look at: held for review, complaints, people
    # who left, challenge-response requests (recent ones, newest first), with the contact.
    noticed: list[tuple[InboundEventRow, str | None]] = field(default_factory=list)


def _load(store: Store, since: date | None, segment: str | None, now: datetime) -> _Facts:
    with store.session() as session:
        query = select(ContactRow)
        if since is not None:
            query = query.where(ContactRow.created_at >= datetime.combine(since, time(0), UTC))
        if segment is not None:
            query = query.where(ContactRow.segment == segment)
        facts = _Facts({c.id: c for c in session.scalars(query)})
        ids = list(facts.contacts)
        for chunk in in_chunks(ids):
            for change in session.scalars(
                select(StageChangeRow)
                .where(StageChangeRow.contact_id.in_(chunk))
                .order_by(StageChangeRow.at, StageChangeRow.id)
            ):
                facts.history[change.contact_id].append(change)
            for row in session.scalars(select(OutboxRow).where(OutboxRow.contact_id.in_(chunk))):
                if row.state == OutboxState.SENT:
                    facts.sends[row.contact_id].append(row)
                elif row.state == OutboxState.UNKNOWN:
                    facts.unknown.append((row, facts.contacts[row.contact_id].email))
            for referral in session.scalars(
                select(ReferralRow).where(ReferralRow.contact_id.in_(chunk))
            ):
                facts.referrals[referral.contact_id] += 1
        facts.pause_text = sending_paused(session, now)  # a pause whose end came is lifted
        facts.paused_domains = paused_domains(session)
        noticed = (
            select(InboundEventRow, ContactRow.email)
            .outerjoin(ContactRow, InboundEventRow.contact_id == ContactRow.id)
            .where(
                or_(
                    InboundEventRow.review == "pending",
                    and_(
                        InboundEventRow.received_at >= now - UNPROCESSABLE_RECENT,
                        InboundEventRow.trusted.is_(True),
                        or_(
                            InboundEventRow.kind.in_(
                                (InboundKind.COMPLAINT, InboundKind.CHALLENGE)
                            ),
                            InboundEventRow.effect.like("left the organization%"),
                        ),
                    ),
                )
            )
            .order_by(InboundEventRow.received_at.desc())
            .limit(UNPROCESSABLE_SHOWN)
        )
        facts.noticed = [(row, email) for row, email in session.execute(noticed)]
        facts.unprocessable = list(
            session.scalars(
                select(InboundEventRow)
                .where(
                    InboundEventRow.kind == InboundKind.UNPROCESSABLE,
                    InboundEventRow.received_at >= now - UNPROCESSABLE_RECENT,
                )
                .order_by(InboundEventRow.received_at.desc())
                .limit(UNPROCESSABLE_SHOWN)
            )
        )
    return facts


def build_report(
    store: Store,
    settings: Settings,
    *,
    now: datetime,
    since: date | None = None,
    segment: str | None = None,
    stale_after_days: int = 7,
) -> Report:
    """Read the store and compute the report (nothing is written)."""
    stages = settings.the_pipeline.stages
    zone = ZoneInfo(settings.practice.timezone)
    facts = _load(store, since, segment, now)
    contacts, history, sends, referrals = (
        facts.contacts,
        facts.history,
        facts.sends,
        facts.referrals,
    )
    first_reply = {cid: _first_reply(history[cid], stages) for cid in contacts}
    segments = []
    for name, config in settings.segments.items():
        if segment is not None and name != segment:
            continue
        members = [c for c in contacts.values() if c.segment == name]
        reached = [
            max((_funnel_rank(h.to_stage, stages) for h in history[c.id]), default=0)
            for c in members
        ]
        segments.append(
            SegmentFunnel(
                segment=name,
                label=config.label,
                contacts=len(members),
                contacted=sum(r >= 1 for r in reached),
                replied=sum(r >= 2 for r in reached),
                engaged=sum(r >= 3 for r in reached),
                referring=sum(r >= 4 for r in reached),
                referrals=sum(referrals[c.id] for c in members),
            )
        )

    steps = _step_stats(settings, contacts, sends, first_reply, segment)
    waits = []
    for cid, replied_at in first_reply.items():
        sent = sorted(r.sent_at for r in sends[cid] if r.sent_at)
        if replied_at is not None and sent and sent[0] <= replied_at:
            waits.append((replied_at - sent[0]).total_seconds() / 3600)

    attribution = []
    for cid, count in sorted(referrals.items(), key=lambda kv: (-kv[1], contacts[kv[0]].email)):
        c = contacts[cid]
        drew = _drawing_message(sends[cid], first_reply[cid])
        name = full_name(c.first_name, c.last_name) or c.email
        attribution.append(
            Attribution(
                c.email,
                name,
                c.segment,
                count,
                f"{step_name(drew.step_index, drew.template)}: {drew.subject}" if drew else None,
            )
        )
    by_segment: Counter[str] = Counter()
    for a in attribution:
        by_segment[a.segment] += a.referrals

    attention = _attention(facts, settings, now, stale_after_days)
    return Report(
        generated_at=now,
        since=since,
        segments=segments,
        steps=steps,
        median_hours_to_first_reply=statistics.median(waits) if waits else None,
        bounces=sum(c.stage == BOUNCED for c in contacts.values()),
        opt_outs=sum(c.stage == UNSUBSCRIBED for c in contacts.values()),
        paused=sum(1 for c in contacts.values() if c.paused_until and c.paused_until > now),
        attribution=attribution,
        referrals_by_segment=dict(by_segment),
        attention=attention,
        pipeline_over_time=_over_time(contacts, history, stages, now, zone),
        timezone=settings.practice.timezone,
    )


def _first_reply(changes: Sequence[StageChangeRow], stages: Sequence[str]) -> datetime | None:
    for change in changes:
        if _funnel_rank(change.to_stage, stages) >= FUNNEL.index(REPLIED):
            return change.at
    return None


def _drawing_message(sent: Sequence[OutboxRow], replied_at: datetime | None) -> OutboxRow | None:
    if replied_at is None:
        return None
    before = [r for r in sent if r.sent_at and r.sent_at <= replied_at]
    return max(before, key=lambda r: r.sent_at or replied_at) if before else None


def _step_stats(
    settings: Settings,
    contacts: dict[int, ContactRow],
    sends: dict[int, list[OutboxRow]],
    first_reply: dict[int, datetime | None],
    only: str | None,
) -> list[StepStats]:
    sent: Counter[tuple[str, int]] = Counter()
    replies: Counter[tuple[str, int]] = Counter()
    for cid, rows in sends.items():
        segment = contacts[cid].segment
        for row in rows:
            sent[(segment, row.step_index)] += 1
        drew = _drawing_message(rows, first_reply[cid])
        if drew is not None:
            replies[(segment, drew.step_index)] += 1
    templates: dict[tuple[str, int], str] = {}
    for rows in sends.values():
        for row in rows:
            if row.step_index >= REPLY_STEP_BASE:
                templates.setdefault(
                    (contacts[row.contact_id].segment, row.step_index), row.template
                )
    stats = []
    for name, config in settings.segments.items():
        if only is not None and name != only:
            continue
        for index, step in enumerate(config.sequence):
            stats.append(
                StepStats(
                    name,
                    index + 1,
                    step.template,
                    sent[(name, index)],
                    replies[(name, index)],
                    step_name(index, step.template),
                )
            )
        # A rule's replies, per template, and the check-ins, together, after the sequence.
        extra: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        kinds: dict[str, tuple[int, str]] = {}
        for (segment_name, index), count in sent.items():
            if segment_name != name or index < REPLY_STEP_BASE:
                continue
            nurture = index >= NURTURE_STEP_BASE
            template = config.nurture_template if nurture else templates[(name, index)]
            key = "Check-ins" if nurture else step_name(REPLY_STEP_BASE, template)
            kinds[key] = (NURTURE_STEP_BASE if nurture else REPLY_STEP_BASE, template)
            extra[key][0] += count
            extra[key][1] += replies[(name, index)]
        for key in sorted(extra, key=lambda k: (kinds[k][0], k)):
            base, template = kinds[key]
            sent_count, reply_count = extra[key]
            stats.append(StepStats(name, base + 1, template, sent_count, reply_count, key))
    return stats


def _attention(
    facts: _Facts, settings: Settings, now: datetime, stale_after_days: int
) -> list[Attention]:
    contacts, history = facts.contacts, facts.history
    zone = ZoneInfo(settings.practice.timezone)
    items = []
    if facts.pause_text:
        items.append(
            Attention("sending paused", "all sending", facts.pause_text, "outreach sending resume")
        )
    for row, email in facts.unknown:
        sent = f" on {when_local(row.updated_at.astimezone(zone))}" if row.updated_at else ""
        items.append(
            Attention(
                "unknown send",
                email,
                f"the {step_name(row.step_index, row.template).lower()}{sent} may not have "
                "arrived: look in your Sent folder, then say whether it went out",
                f"outreach outbox resolve {row.id} --sent   (or --resend)",
            )
        )
    for domain, why in sorted(facts.paused_domains.items()):
        items.append(
            Attention(
                "sending paused to a domain",
                domain,
                why,
                f"outreach sending resume --domain {domain}",
            )
        )
    items += _contact_attention(facts, settings)
    items += _inbound_attention(facts, zone)
    for event in facts.unprocessable:
        error = (event.detail or {}).get("error", "an error")
        sender = f"a message from {event.sender_domain}" if event.sender_domain else "a message"
        items.append(
            Attention(
                "unprocessable message",
                sender,
                f"received {when_local(event.received_at.astimezone(zone))} in {event.folder}, "
                f"but outreach could not handle it ({error}); it had no effect: read it in your "
                "mail program",
                message_key=event.message_key,
            )
        )
    for cid, c in sorted(contacts.items(), key=lambda kv: kv[1].email):
        if c.stage == REPLIED:
            since = max((h.at for h in history[cid] if h.to_stage == REPLIED), default=None)
            if since is not None and now - since > timedelta(days=stale_after_days):
                days = (now - since).days
                items.append(
                    Attention(
                        "replied, not engaged",
                        c.email,
                        f"replied {plural(days, 'day')} ago and nothing since: a personal call "
                        "may help",
                        f"outreach stage set {shlex.quote(c.email)} engaged",
                    )
                )
        if c.paused_until is not None and c.paused_until > now:
            until = c.paused_until.astimezone(zone)
            items.append(
                Attention("paused", c.email, f"paused until {until:%a} {until.day} {until:%b %Y}")
            )
    return items


def _contact_attention(facts: _Facts, settings: Settings) -> list[Attention]:
    """Contacts held for approval (one item per segment) and contacts lacking data."""
    held: Counter[str] = Counter(c.segment for c in facts.contacts.values() if c.held_since)
    items = []
    for segment, count in sorted(held.items()):
        config = settings.segments.get(segment)
        label = config.label if config else segment
        they = "waits" if count == 1 else "wait"
        items.append(
            Attention(
                "waiting for approval",
                label,
                f"{plural(count, 'contact')} {they} for your approval: nothing goes to "
                f"{'it' if count == 1 else 'them'} until you approve",
                f"outreach approve --segment {segment}",
            )
        )
    lacking = sorted((c for c in facts.contacts.values() if c.needs_data), key=lambda c: c.email)
    for c in lacking:
        needs = str(c.needs_data)
        first = needs.replace(";", ",").split(",")[0].strip() or "FIELD"
        items.append(
            Attention(
                "needs data",
                c.email,
                f"lacks {needs}, which its templates need: nothing goes to it until it is "
                "filled in; everyone else sends",
                f"outreach contacts edit {shlex.quote(c.email)} --set {first}=VALUE",
            )
        )
    return items


def _inbound_attention(facts: _Facts, zone: ZoneInfo) -> list[Attention]:
    """Inbound messages to look at: held for review, complaints, challenges, people who left."""
    items = []
    for event, email in facts.noticed:
        who = str(email or f"a sender at {event.sender_domain or 'an unknown domain'}")
        day = event.received_at.astimezone(zone)
        on = f"{day:%a} {day.day} {day:%b %Y}"
        if event.review == "pending":
            kind = str(event.kind).replace("_", " ")
            items.append(
                Attention(
                    "not sure: please decide",
                    who,
                    f"a message received {on} looks like a {kind}, but outreach is not sure; "
                    "nothing changed until you decide",
                    "outreach inbox review",
                    message_key=event.message_key,
                )
            )
        elif event.kind == InboundKind.COMPLAINT:
            items.append(
                Attention(
                    "abuse complaint",
                    who,
                    f"reported our email as spam on {on}: now do_not_contact and suppressed",
                )
            )
        elif event.kind == InboundKind.CHALLENGE:
            items.append(
                Attention(
                    "verification request",
                    who,
                    f"a challenge-response system holds our email (received {on}): complete "
                    "it in your mail program if you want them to get our mail",
                )
            )
        else:
            new = (event.detail or {}).get("new_address")
            items.append(
                Attention(
                    "left the organization",
                    who,
                    "an automatic answer says they left"
                    + (f"; new address {new}" if new else "")
                    + ": update or remove the contact",
                    f"outreach contacts remove {shlex.quote(email)}" if email else "",
                )
            )
    return items


def _over_time(
    contacts: dict[int, ContactRow],
    history: dict[int, list[StageChangeRow]],
    stages: Sequence[str],
    now: datetime,
    zone: ZoneInfo,
    points: int = 12,
) -> list[tuple[date, dict[str, int]]]:
    """How many contacts sat in each stage at up to ``points`` moments since the first import,
    one per practice-local date (the last moment of a date wins)."""
    if not contacts:
        return []
    start = min(c.created_at for c in contacts.values())
    span = max(now - start, timedelta(days=7))
    step = span / points
    series: dict[date, dict[str, int]] = {}
    for i in range(1, points + 1):
        moment = start + step * i
        counts: Counter[str] = Counter()
        for cid in contacts:
            stage = None
            for change in history[cid]:
                if change.at <= moment:
                    stage = change.to_stage
            if stage is not None:
                counts[stage] += 1
        series[moment.astimezone(zone).date()] = {s: counts[s] for s in stages if counts[s]}
    return list(series.items())
