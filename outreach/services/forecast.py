"""Looking ahead without sending: the exact message a step would send (``preview``), and what
would be sent when (``plan``, and ``status``'s "due today", from the same ``forecast``).

``preview`` shows any step at any time: a follow-up before the intro went out threads under
the earlier steps as they would be sent (each rendered now, with a Message-ID of its own);
``--step nurture`` is the check-in of an engaged or referring source; ``--step TEMPLATE`` a
rule's reply (``reply_with``), threaded under the steps already sent, as the dispatcher
would. Nothing is written.
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.domain.pacing import schedule
from outreach.domain.sequencing import (
    NURTURE_STAGES,
    NURTURE_STEP_BASE,
    REPLY_STEP_BASE,
    StepRecord,
)
from outreach.errors import OutreachError
from outreach.mail.compose import OutboundMessage, new_message_id
from outreach.services.contacts import find_contact
from outreach.services.dispatch import Dispatcher
from outreach.services.due import DueSteps, last_touches, ledger_records, suppressed_keys
from outreach.store.ledger import (
    paused_domains,
    sending_paused,
    sending_paused_until,
    thread_rows,
)
from outreach.store.models import ContactRow

NURTURE = "nurture"  # --step for the check-in
NURTURE_ALIASES = frozenset({NURTURE, "check-in", "checkin"})
# Headers of the MIME plumbing, left out of the readable preview.
PLUMBING = frozenset({"mime-version", "content-type", "content-transfer-encoding"})


def preview(
    dispatcher: Dispatcher, email_address: str, *, step: str | None, now: datetime
) -> OutboundMessage:
    """The exact message (headers and body) the contact would get for a step: a sequence
    step (1-based; default: the contact's next one), ``nurture``, or a rule reply's template."""
    settings = dispatcher.settings
    with dispatcher.store.session() as session:
        contact = find_contact(session, email_address)
        segment = settings.segments.get(contact.segment)
        if segment is None:
            raise OutreachError(f"{contact.email}: segment {contact.segment!r} is not configured")
        message_id = new_message_id(settings.sender.message_id_domain)
        if step is not None and step.strip().lower() in NURTURE_ALIASES:
            return dispatcher.compose(contact, NURTURE_STEP_BASE, [], message_id, now)
        replies = rule_replies(dispatcher, contact.segment)
        if step is not None and step.strip() in replies:
            earlier = thread_rows(session, contact.id, REPLY_STEP_BASE)
            return dispatcher.compose(
                contact, REPLY_STEP_BASE, earlier, message_id, now, template=step.strip()
            )
        steps = len(segment.sequence)
        if not steps:
            raise OutreachError(f"segment {contact.segment!r} has no sequence steps")
        sent = thread_rows(session, contact.id, steps)
        index = _step_index(step, min(len(sent), steps - 1), steps, replies)
        earlier = _thread_before(dispatcher, session, contact, index, sent, now)
        return dispatcher.compose(contact, index, earlier, message_id, now)


def rule_replies(dispatcher: Dispatcher, segment: str) -> list[str]:
    """The templates the rules may reply with (``reply_with``) to a source of ``segment``."""
    found: list[str] = []
    for rule in dispatcher.settings.rules:
        name = rule.then.reply_with
        reaches = not rule.when.segment or segment in rule.when.segment
        if name and reaches and name not in found:
            found.append(name)
    return found


def _step_index(value: str | None, default: int, steps: int, replies: list[str]) -> int:
    if value is None:
        return default
    text = value.strip()
    if text.isdigit() and 1 <= int(text) <= steps:
        return int(text) - 1
    others = ", ".join([NURTURE, *replies])
    raise OutreachError(
        f"--step {value!r}: give a sequence step from 1 to {steps}, or one of: {others}"
    )


def _thread_before(
    dispatcher: Dispatcher,
    session: Session,
    contact: ContactRow,
    index: int,
    sent: list[tuple[str, str]],
    now: datetime,
) -> list[tuple[str, str]]:
    """(Message-ID, subject) of the steps before ``index``: those sent, then each one not
    sent yet as it would be (rendered now, with a new Message-ID)."""
    earlier = list(sent[:index])
    for before in range(len(earlier), index):
        message_id = new_message_id(dispatcher.settings.sender.message_id_domain)
        message = dispatcher.compose(contact, before, earlier, message_id, now)
        earlier.append((message.message_id, message.subject))
    return earlier


def readable(data: bytes) -> str:
    """A message as people read it: its headers decoded (no RFC 2047 words), then the
    plain-text body decoded (no quoted-printable)."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    lines = [f"{name}: {value}" for name, value in message.items() if name.lower() not in PLUMBING]
    body = message.get_body(preferencelist=("plain",))
    text = body.get_content() if isinstance(body, EmailMessage) else ""
    return "\n".join(lines) + "\n\n" + str(text).replace("\r\n", "\n")


@dataclass(frozen=True)
class PlannedSend:
    """One forecast send."""

    at: datetime
    email: str
    segment: str
    step: int
    template: str

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "email": self.email,
            "segment": self.segment,
            "step": self.step,
            "template": self.template,
        }


def plan(dispatcher: Dispatcher, *, now: datetime, days: int) -> list[PlannedSend]:
    """What would be sent when over the next ``days``, honoring every sending rule."""
    return forecast(dispatcher.due, now=now, until=now + timedelta(days=days))


def due_today(due: DueSteps, now: datetime) -> int:
    """How many sends ``forecast`` places between ``now`` and the end of the practice's day:
    what the dispatcher will send today, window, business days, caps and pauses honored."""
    end = datetime.combine(
        now.astimezone(due.practice_zone).date() + timedelta(days=1), time(), due.practice_zone
    )
    return sum(1 for p in forecast(due, now=now, until=end) if p.at < end)


def next_send(due: DueSteps, now: datetime, *, days: int = 14) -> datetime | None:
    """When the next send would go out within ``days``, or None."""
    planned = forecast(due, now=now, until=now + timedelta(days=days))
    return planned[0].at if planned else None


def forecast(due: DueSteps, *, now: datetime, until: datetime) -> list[PlannedSend]:
    """What would be sent when between ``now`` and ``until``, honoring every sending rule:
    windows, business days, caps and pacing, contacts held for review or waiting for data
    (``needs_data``), a pause of all sending (nothing while it holds; from its end, when it
    has one) and paused recipient domains.

    Follow-ups are forecast from the planned time of the step before them. Nothing is written.
    """
    settings = due.settings
    planned: list[PlannedSend] = []
    with due.store.session() as session:
        start = now
        if sending_paused(session, now) is not None:
            ends = sending_paused_until(session)
            if ends is None or ends > until:
                return []
            start = ends
        domains = paused_domains(session)
        log = due.send_log(session, now)
        # A contact whose next check is after ``until`` has nothing due before it: the
        # dispatcher reads contacts through the same index.
        rows = {
            r.id: r
            for r in session.scalars(select(ContactRow).where(ContactRow.next_check_at <= until))
        }
        # Contacts marked as lacking data their templates use wait until it is added.
        lacking = {cid for cid, r in rows.items() if r.needs_data is not None}
        ledger = ledger_records(session, list(rows))
        suppressed = suppressed_keys(session, [r.email_key for r in rows.values()])
        records = {cid: list(ledger.get(cid, [])) for cid in rows}
        touches = last_touches(
            session, [cid for cid, r in rows.items() if r.stage in NURTURE_STAGES]
        )
        waiting = {c.key: c for c in due.waiting(session, until)}
        for _round in range(
            1 + max((len(s.sequence) for s in settings.segments.values()), default=0)
        ):
            candidates = list(waiting.values())
            waiting = {}
            for cid, row in rows.items():
                touch = touches.get(cid)
                candidate = (
                    due.nurture_candidate(row, touch, suppressed)
                    if row.stage in NURTURE_STAGES and touch is not None
                    else due.next_candidate(row, records[cid], suppressed)
                )
                if candidate is None:
                    continue
                if any(r.step_index == candidate.step_index for r in records[cid]):
                    continue
                candidates.append(candidate)
            candidates = [
                c
                for c in candidates
                if c.email.rpartition("@")[2].lower() not in domains and c.contact_id not in lacking
            ]
            by_key = {c.key: c for c in candidates}
            scheduled = schedule(
                due.due_sends(candidates), due.policy, log, start=start, until=until
            )
            if not scheduled:
                break
            for send, at in scheduled:
                c = by_key[send.key]  # type: ignore[index]
                template = due.template_of(c)
                planned.append(PlannedSend(at, c.email, c.segment, c.step_index + 1, template))
                records.setdefault(c.contact_id, []).append(StepRecord(c.step_index, "sent", at))
                if rows.get(c.contact_id) is not None and rows[c.contact_id].stage == "new":
                    rows[c.contact_id].stage = "contacted"
        session.rollback()
    planned.sort(key=lambda p: p.at)
    return planned
