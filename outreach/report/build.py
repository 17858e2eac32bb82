"""The report: pipeline funnel per segment, reply rate per step, referral attribution, and what
needs the therapist's attention. Built from the stage history and the delivery ledger.

Decisions:
- The funnel counts how far each contact ever got (new < contacted < replied < engaged <
  referring), from its stage history, so a source moved by hand from new to engaged counts as
  contacted and replied too; extra configured stages count as the funnel stage before them.
- A reply is attributed to the last message sent to that contact before it first reached
  ``replied`` (or beyond): the message that drew the reply.
- ``--since`` selects a cohort: the contacts enrolled (imported) on or after that date.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

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
from outreach.domain.states import InboundKind, OutboxState
from outreach.store.database import Store, in_chunks
from outreach.store.ledger import SENDING_PAUSED, paused_domains
from outreach.store.models import (
    ContactRow,
    InboundEventRow,
    OutboxRow,
    ReferralRow,
    StageChangeRow,
    StateRow,
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
    step: int
    template: str
    sent: int
    replies: int

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
    first_reply_to: str | None  # "step 2 (follow_up_1): Re: ..." or None (no emailed reply)


@dataclass(frozen=True)
class Attention:
    """Something the therapist should look at."""

    kind: str
    subject: str
    detail: str


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

    @property
    def is_empty(self) -> bool:
        return not any(s.contacts for s in self.segments)

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
        paused = session.get(StateRow, SENDING_PAUSED)
        facts.pause_text = paused.value if paused else None
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
                f"step {drew.step_index + 1} ({drew.template}): {drew.subject}" if drew else None,
            )
        )
    by_segment: Counter[str] = Counter()
    for a in attribution:
        by_segment[a.segment] += a.referrals

    attention = _attention(facts, now, stale_after_days)
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
        pipeline_over_time=_over_time(contacts, history, stages, now),
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
    stats = []
    for name, config in settings.segments.items():
        if only is not None and name != only:
            continue
        for index, step in enumerate(config.sequence):
            stats.append(
                StepStats(
                    name, index + 1, step.template, sent[(name, index)], replies[(name, index)]
                )
            )
    return stats


def _attention(facts: _Facts, now: datetime, stale_after_days: int) -> list[Attention]:
    contacts, history, unknown, pause_text = (
        facts.contacts,
        facts.history,
        facts.unknown,
        facts.pause_text,
    )
    items = []
    if pause_text:
        items.append(Attention("sending paused", "all sending", pause_text))
    for row, email in unknown:
        items.append(
            Attention(
                "unknown send",
                email,
                f"step {row.step_index + 1} ({row.message_id}) may not have arrived: check, then "
                f"`outreach outbox resolve {row.id} --sent` or `--resend`",
            )
        )
    for domain, why in sorted(facts.paused_domains.items()):
        items.append(
            Attention(
                "sending paused to a domain",
                domain,
                f"{why}; then `outreach sending resume --domain {domain}`",
            )
        )
    items += _inbound_attention(facts)
    for event in facts.unprocessable:
        error = (event.detail or {}).get("error", "an error")
        items.append(
            Attention(
                "unprocessable message",
                event.message_key,
                f"read {event.received_at:%Y-%m-%d %H:%M} UTC in {event.folder}, but outreach "
                f"could not handle it ({error}); it had no effect: read it in your mail program",
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
                        f"replied {days} days ago and nothing since: a personal call may help",
                    )
                )
        if c.paused_until is not None and c.paused_until > now:
            items.append(Attention("paused", c.email, f"paused until {c.paused_until:%Y-%m-%d}"))
    return items


def _inbound_attention(facts: _Facts) -> list[Attention]:
    """Inbound messages to look at: held for review, complaints, challenges, people who left."""
    items = []
    for event, email in facts.noticed:
        who = str(email or event.message_key)
        if event.review == "pending":
            items.append(
                Attention(
                    "not sure: please decide",
                    who,
                    f"{event.message_key} read as a low-confidence {event.kind}; nothing "
                    f"changed: `outreach inbox decide '{event.message_key}' --as KIND`",
                )
            )
        elif event.kind == InboundKind.COMPLAINT:
            items.append(
                Attention(
                    "abuse complaint",
                    who,
                    f"reported our message as spam on {event.received_at:%Y-%m-%d}: "
                    "now do_not_contact and suppressed",
                )
            )
        elif event.kind == InboundKind.CHALLENGE:
            items.append(
                Attention(
                    "verification request",
                    who,
                    f"a challenge-response system holds our message ({event.message_key}): "
                    "complete it in your mail program if you want them to get our mail",
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
                )
            )
    return items


def _over_time(
    contacts: dict[int, ContactRow],
    history: dict[int, list[StageChangeRow]],
    stages: Sequence[str],
    now: datetime,
    points: int = 12,
) -> list[tuple[date, dict[str, int]]]:
    """How many contacts sat in each stage at the end of each of the last ``points`` weeks."""
    if not contacts:
        return []
    start = min(c.created_at for c in contacts.values())
    span = max(now - start, timedelta(days=7))
    step = span / points
    series = []
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
        series.append((moment.date(), {s: counts[s] for s in stages if counts[s]}))
    return series
