"""Applying workflow rules to a contact: stage, tags, pause, notices, replies and filing.

Rules fire on inbound events (reply, out_of_office, auto_reply, bounce, unsubscribe, complaint,
receipt, challenge; not on a low-confidence reading held for review), on a referral, and on
``stage_changed`` (a change by hand or by an inbound message; a change made by a rule does not
fire rules again, so rules can't loop).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from outreach.config import Settings
from outreach.domain.fields import full_name
from outreach.domain.pipeline import Pipeline, StageChange
from outreach.domain.rules import RuleEvent, evaluate
from outreach.domain.sequencing import NURTURE_STEP_BASE, REPLY_STEP_BASE
from outreach.errors import MailServerUnusable, TemplateProblem
from outreach.mail.abc import Delivery, OpenSmtp, Outcome
from outreach.mail.compose import OutboundMessage, new_message_id
from outreach.mail.notices import notice
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
) -> RuleRun:
    """Evaluate the rules for one event on ``contact`` and apply their actions."""
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
    done = []
    why = f"rule {', '.join(map(str, actions.rules))} on {on} {key}"
    if actions.set_stage and move_contact(contact, pipeline, actions.set_stage, now, why):
        done.append(f"stage {actions.set_stage}")
    tags = [t for t in (contact.tags or []) if t not in actions.remove_tags]
    tags += [t for t in actions.add_tags if t not in tags]
    if tags != list(contact.tags or []):
        contact.tags = tags
        done.append(f"tags {', '.join(tags) or '(none)'}")
    if actions.pause_days:
        until = now + timedelta(days=actions.pause_days)
        contact.paused_until = max(contact.paused_until or until, until)
        contact.next_check_at = contact.paused_until
        done.append(f"paused until {contact.paused_until:%Y-%m-%d}")
    for template in actions.reply_with:
        queue_reply(session, settings, contact, template, now)
        done.append(f"reply {template} queued")
    if actions.notify:
        try:
            run.notices.append(_notice(settings, contact, on, key, refers_to))
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


def _notice(
    settings: Settings, contact: ContactRow, on: str, key: str, refers_to: Sequence[str]
) -> OutboundMessage:
    name = full_name(contact.first_name, contact.last_name) or contact.email
    what = on.replace("_", " ")
    lines = [f"{name} <{contact.email}> ({contact.segment}, now {contact.stage}): {what} {key}."]
    if refers_to:
        lines.append(f"It answers our message {', '.join(refers_to)}.")
    lines.append("Read it in your mail program; outreach keeps no message text.")
    return notice(
        settings, f"outreach: {what} from {name}", lines, refers_to[-1] if refers_to else None
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
    return change, _fire(store, settings, smtp, email, events, f"referral {received_on}", now)


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
    return change, _fire(store, settings, smtp, email, ["stage_changed"], "set by hand", now)


def _fire(
    store: Store,
    settings: Settings,
    smtp: OpenSmtp,
    email: str,
    events: list[str],
    key: str,
    now: datetime,
) -> str:
    if not settings.rules:
        return ""
    notices: list[OutboundMessage] = []
    summary = ""
    with store.session() as session:
        contact = find_contact(session, email)
        for on in events:
            run = run_rules(
                session, settings, settings.the_pipeline, contact, on=on, key=key, now=now
            )
            summary += run.summary
            notices += run.notices
    send_notices(smtp, notices, key)
    return summary


__all__ = [
    "RuleRun",
    "queue_reply",
    "record_referral",
    "run_rules",
    "send_notices",
    "set_stage_by_hand",
]
