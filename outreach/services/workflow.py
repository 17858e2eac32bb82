"""Applying workflow rules to a contact: stage, tags, pause, notices, replies and filing.

Rules fire on inbound events (reply, out_of_office, auto_reply, bounce, unsubscribe, complaint,
receipt, challenge; not on a low-confidence reading held for review), on a referral, and on
``stage_changed`` (a change by hand or by an inbound message; a change made by a rule does not
fire rules again, so rules can't loop).
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from outreach.config import Settings
from outreach.domain.pipeline import Pipeline, StageChange
from outreach.domain.rules import RuleEvent, evaluate
from outreach.domain.sequencing import NURTURE_STEP_BASE, REPLY_STEP_BASE, step_name
from outreach.errors import MailServerUnusable, TemplateProblem
from outreach.mail.abc import Delivery, OpenSmtp, Outcome
from outreach.mail.compose import OutboundMessage, new_message_id
from outreach.mail.notices import Answered, Source, source_notice
from outreach.services.contacts import add_referral, find_contact, move_contact, set_stage
from outreach.store.database import Store
from outreach.store.ledger import new_row
from outreach.store.models import ContactRow, OutboxRow

log = logging.getLogger("outreach.workflow")  # pinned: journal lines show it


@dataclass
class RuleRun:
    """What the rules did for one event."""

    summary: str = ""
    notices: list[OutboundMessage] = field(default_factory=list)
    move_to: str | None = None


def run_rules(
    session: Session,
    settings: Settings,
    pipeline: Pipeline,
    contact: ContactRow,
    *,
    on: str,
    key: str,
    now: datetime,
    text: str = "",
    sender_domain: str = "",
    refers_to: Sequence[str] = (),
    did: Sequence[str] = (),
) -> RuleRun:
    """Evaluate the rules for one event on ``contact`` and apply their actions; ``did`` says
    in words what the event did before them (for a ``notify``)."""
    run = RuleRun()
    if not settings.rules:
        return run
    event = RuleEvent(
        on=on,
        segment=contact.segment,
        stage=contact.stage,
        tags=tuple(contact.tags or ()),
        sender_domain=sender_domain,
        text=text,
    )
    actions = evaluate(settings.rules, event)
    if not actions.rules:
        return run
    done: list[str] = []
    said = list(did)  # the same, in words for the therapist's notice
    why = f"rule {', '.join(map(str, actions.rules))} on {on} {key}"
    if actions.set_stage and move_contact(contact, pipeline, actions.set_stage, now, why):
        done.append(f"stage {actions.set_stage}")
        said.append(f"moved them to {actions.set_stage} (a rule)")
    tags = [t for t in (contact.tags or []) if t not in actions.remove_tags]
    tags += [t for t in actions.add_tags if t not in tags]
    if tags != list(contact.tags or []):
        contact.tags = tags
        done.append(f"tags {', '.join(tags) or '(none)'}")
        said.append(f"set their tags to {', '.join(tags) or 'none'}")
    if actions.pause_days:
        until = now + timedelta(days=actions.pause_days)
        contact.paused_until = max(contact.paused_until or until, until)
        contact.next_check_at = contact.paused_until
        done.append(f"paused until {contact.paused_until:%Y-%m-%d}")
        said.append(f"paused their emails until {contact.paused_until:%Y-%m-%d}")
    for template in actions.reply_with:
        email = step_name(REPLY_STEP_BASE, template).lower()
        if contact.held_since is not None:
            # Held for the therapist's review: an automatic reply would go out unreviewed, or
            # weeks late at approval. The reversible thing: queue nothing, and say so.
            done.append(f"reply {template} not queued (held for review)")
            said.append(f"did not queue the {email} email: they are held for your review")
            continue
        queue_reply(session, settings, contact, template, now)
        done.append(f"reply {template} queued")
        said.append(f"queued the {email} email (it goes out in the sending hours)")
    if actions.move_to:
        said.append(f"filed the message in the folder {actions.move_to}")
    if actions.notify:
        try:
            run.notices.append(
                rule_notice(session, settings, contact, on=on, did=said, refers_to=refers_to)
            )
            done.append("notice queued")
        except TemplateProblem as exc:  # a header a sender crafted: the rest still applies
            done.append(f"notice not sent ({exc})")
    if actions.move_to:
        run.move_to = actions.move_to
        done.append(f"move to {actions.move_to}")
    run.summary = f"; {why}: {', '.join(done) or 'nothing to change'}"
    return run


def queue_reply(
    session: Session, settings: Settings, contact: ContactRow, template: str, now: datetime
) -> None:
    """A ledger row for a rule's reply: sent by the dispatcher under the sending policy."""
    highest = session.scalar(
        select(func.max(OutboxRow.step_index)).where(
            OutboxRow.contact_id == contact.id,
            OutboxRow.step_index >= REPLY_STEP_BASE,
            OutboxRow.step_index < NURTURE_STEP_BASE,  # check-ins number on their own
        )
    )
    step_index = (highest or REPLY_STEP_BASE - 1) + 1
    message_id = new_message_id(settings.sender.message_id_domain)
    session.add(new_row(contact.id, step_index, template, message_id, now))


def source_of(settings: Settings, contact: ContactRow) -> Source:
    """Whom a notice is about: the contact's name, organization and segment's label."""
    segment = settings.segments.get(contact.segment)
    return Source.of(
        contact.email,
        first_name=contact.first_name,
        last_name=contact.last_name,
        title=contact.title,
        organization=contact.organization,
        segment=segment.label if segment else contact.segment,
    )


def answered(
    session: Session, settings: Settings, contact: ContactRow, refers_to: Sequence[str]
) -> Answered | None:
    """Our email to ``contact`` that a message cites (the latest cited), if any."""
    if not refers_to:
        return None
    row = session.scalars(
        select(OutboxRow)
        .where(OutboxRow.contact_id == contact.id, OutboxRow.message_id.in_(list(refers_to)))
        .order_by(OutboxRow.sent_at.desc(), OutboxRow.id.desc())
    ).first()
    if row is None:
        return None
    zone = ZoneInfo(settings.practice.timezone)
    sent = row.sent_at.astimezone(zone) if row.sent_at else None
    return Answered(step_name(row.step_index, row.template).lower(), row.subject, sent)


# What happened, as the first line of a rule's notice; {who} the source's short name.
_HAPPENED = {
    "reply": "{who} replied to our email.",
    "out_of_office": "{who} is away: an automatic out-of-office reply came.",
    "auto_reply": "An automatic reply came from {who}.",
    "bounce": "Our email to {who} bounced.",
    "unsubscribe": "{who} asked to receive no more emails.",
    "complaint": "{who} (or their provider) reported our email as spam.",
    "receipt": "{who}'s mail program sent a read receipt.",
    "challenge": "A verification request came for our email to {who}.",
    "referral": "A referral from {who} was recorded.",
    "stage_changed": "{who} is now {stage}.",
}


def rule_notice(
    session: Session,
    settings: Settings,
    contact: ContactRow,
    *,
    on: str,
    did: Sequence[str],
    refers_to: Sequence[str] = (),
) -> OutboundMessage:
    """A rule's ``notify``: the event, the source, our email it answers, what was done."""
    source = source_of(settings, contact)
    happened = _HAPPENED.get(on, "{who}: " + on.replace("_", " ") + ".")
    email = shlex.quote(contact.email)
    commands = [f"outreach contacts show {email}"]
    if on == "reply":
        commands += [f"outreach stage set {email} engaged", f"outreach referrals add {email}"]
    return source_notice(
        settings,
        kind=on,
        source=source,
        happened=[happened.format(who=source.short, stage=contact.stage)],
        answered=answered(session, settings, contact, refers_to),
        done=did,
        commands=commands,
        refers_to=refers_to[-1] if refers_to else None,
        stage=contact.stage,
    )


def send_notices(smtp: OpenSmtp, notices: Sequence[OutboundMessage], about: str) -> None:
    """Send notices after the transaction that queued them, each on its own SMTP session
    (they are rare); a failure is logged, not raised."""
    for message in notices:
        try:
            delivery = asyncio.run(_send(smtp, message))
        except MailServerUnusable as exc:
            log.error("notice about %s not sent: %s", about, exc)
            continue
        if delivery.outcome is not Outcome.SENT:
            log.error("notice about %s not sent: %s", about, delivery.detail)


async def _send(smtp: OpenSmtp, message: OutboundMessage) -> Delivery:
    async with smtp() as transport:
        return await transport.send(message)


def record_referral(
    store: Store,
    settings: Settings,
    smtp: OpenSmtp,
    email: str,
    *,
    received_on: date,
    now: datetime,
    note: str = "",
) -> tuple[StageChange | None, str]:
    """Record a referral, then run the ``referral`` rules (and ``stage_changed`` if it moved)."""
    change = add_referral(
        store, settings.the_pipeline, email, received_on=received_on, now=now, note=note
    )
    events = ["referral", *(["stage_changed"] if change else [])]
    did = [f"recorded the referral received {received_on:%a} {received_on.day} {received_on:%b %Y}"]
    did += [_moved(change)] if change else []
    key = f"referral {received_on}"
    return change, _fire(store, settings, smtp, email, events, key, now, did)


def set_stage_by_hand(
    store: Store,
    settings: Settings,
    smtp: OpenSmtp,
    email: str,
    stage: str,
    *,
    now: datetime,
    note: str = "",
) -> tuple[StageChange | None, str]:
    """A manual stage change, then the ``stage_changed`` rules."""
    change = set_stage(store, settings.the_pipeline, email, stage, now=now, note=note)
    if change is None:
        return None, ""
    did = [f"{_moved(change)} (by hand)"]
    return change, _fire(store, settings, smtp, email, ["stage_changed"], "set by hand", now, did)


def _moved(change: StageChange) -> str:
    return f"moved them from {change.from_stage or '(none)'} to {change.to_stage}"


def _fire(
    store: Store,
    settings: Settings,
    smtp: OpenSmtp,
    email: str,
    events: list[str],
    key: str,
    now: datetime,
    did: Sequence[str],
) -> str:
    if not settings.rules:
        return ""
    notices: list[OutboundMessage] = []
    summary = ""
    with store.session() as session:
        contact = find_contact(session, email)
        for on in events:
            run = run_rules(
                session, settings, settings.the_pipeline, contact, on=on, key=key, now=now, did=did
            )
            summary += run.summary
            notices += run.notices
    send_notices(smtp, notices, key)
    return summary


__all__ = [
    "RuleRun",
    "answered",
    "queue_reply",
    "record_referral",
    "rule_notice",
    "run_rules",
    "send_notices",
    "set_stage_by_hand",
    "source_of",
]
