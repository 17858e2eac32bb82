"""Outbound services behind the CLI and the daemon: template check, preview, plan, the outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.config import Settings
from outreach.domain.pacing import schedule
from outreach.domain.sequencing import NURTURE_STAGES, StepRecord
from outreach.errors import OutreachError, TemplateProblem
from outreach.mail.compose import new_message_id, template_context
from outreach.mail.templates import TemplateSet
from outreach.services.contacts import find_contact
from outreach.services.dispatch import Dispatcher, _contact_fields
from outreach.store.database import Store
from outreach.store.ledger import SENDING_PAUSED
from outreach.store.models import ContactRow, OutboxRow, StateRow

SYNTHETIC_CONTACT: dict[str, object] = {
    "email": "sample.contact@example.com",
    "first_name": "Sample",
    "last_name": "Contact",
    "title": "Dr.",
    "organization": "Sample Clinic",
    "custom": {},
}


@dataclass(frozen=True)
class TemplateFailure:
    """One template that can't be rendered for one contact."""

    segment: str
    step: int
    contact: str
    problem: str

    def __str__(self) -> str:
        return f"{self.problem} (segment {self.segment}, step {self.step}, contact {self.contact})"


def check_templates(
    store: Store, settings: Settings, templates: TemplateSet
) -> list[TemplateFailure]:
    """Render every template each segment's sequence uses, for every contact of that segment
    (or a sample contact when it has none); every failure is returned, none raised."""
    failures: list[TemplateFailure] = []
    seen: set[tuple[str, int, str]] = set()
    with store.session() as session:
        for name, segment in settings.segments.items():
            contacts = [
                (row.email, _contact_fields(row))
                for row in session.scalars(select(ContactRow).where(ContactRow.segment == name))
            ] or [(f"{SYNTHETIC_CONTACT['email']} (sample)", SYNTHETIC_CONTACT)]
            for index, step in enumerate(segment.sequence):
                for email, fields in contacts:
                    context = template_context(
                        settings, name, fields, step_number=index + 1, template=step.template
                    )
                    try:
                        templates.render(
                            name,
                            step.template,
                            context,
                            needs_subject=index == 0 or not step.thread,
                        )
                    except TemplateProblem as exc:
                        key = (name, index, str(exc))
                        # A broken file fails for everyone: once per step, not per contact.
                        if key in seen and "undefined" not in exc.problem:
                            continue
                        seen.add(key)
                        failures.append(TemplateFailure(name, index + 1, email, str(exc)))
        failures += _check_rule_replies(session, settings, templates)
        failures += _check_nurture(session, settings, templates)
    return failures


def _check_nurture(
    session: Session, settings: Settings, templates: TemplateSet
) -> list[TemplateFailure]:
    """Each segment's nurture check-in renders (a new conversation: it needs a Subject)."""
    failures = []
    for name, segment in settings.segments.items():
        if not segment.nurture_every_days:
            continue
        row = session.scalars(select(ContactRow).where(ContactRow.segment == name)).first()
        fields = _contact_fields(row) if row is not None else SYNTHETIC_CONTACT
        email = row.email if row is not None else f"{SYNTHETIC_CONTACT['email']} (sample)"
        template = segment.nurture_template
        context = template_context(settings, name, fields, step_number=0, template=template)
        try:
            templates.render(name, template, context, needs_subject=True)
        except TemplateProblem as exc:
            failures.append(TemplateFailure(name, 0, email, f"{exc} (nurture)"))
    return failures


def _check_rule_replies(
    session: Session, settings: Settings, templates: TemplateSet
) -> list[TemplateFailure]:
    """Rule replies (``reply_with``) render for every segment the rule can reach."""
    failures = []
    for index, rule in enumerate(settings.rules):
        name = rule.then.reply_with
        if not name:
            continue
        for segment in rule.when.segment or list(settings.segments):
            row = session.scalars(select(ContactRow).where(ContactRow.segment == segment)).first()
            fields = _contact_fields(row) if row is not None else SYNTHETIC_CONTACT
            email = row.email if row is not None else f"{SYNTHETIC_CONTACT['email']} (sample)"
            context = template_context(settings, segment, fields, step_number=0, template=name)
            try:
                # A reply may go to a source we never wrote to: it needs its own Subject.
                templates.render(segment, name, context, needs_subject=True)
            except TemplateProblem as exc:
                failures.append(TemplateFailure(segment, 0, email, f"{exc} (rules[{index}])"))
    return failures


def preview(dispatcher: Dispatcher, email: str, *, step: int | None, now: datetime) -> bytes:
    """The exact message (headers and body) the contact would get for a step (1-based)."""
    with dispatcher.store.session() as session:
        contact = find_contact(session, email)
        sequence = dispatcher.settings.segments[contact.segment].sequence
        if not sequence:
            raise OutreachError(f"segment {contact.segment!r} has no sequence steps")
        sent = dispatcher._thread_rows(session, contact.id, len(sequence))
        index = (step - 1) if step is not None else min(len(sent), len(sequence) - 1)
        if not 0 <= index < len(sequence):
            raise OutreachError(f"--step must be between 1 and {len(sequence)}")
        earlier = sent[:index]
        message_id = new_message_id(dispatcher.settings.sender.message_id_domain)
        return dispatcher.compose(contact, index, earlier, message_id, now).data


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
    """What would be sent when over the next ``days``, honoring every sending rule.

    Follow-ups are forecast from the planned time of the step before them. Nothing is written.
    """
    until = now + timedelta(days=days)
    settings = dispatcher.settings
    planned: list[PlannedSend] = []
    with dispatcher.store.session() as session:
        log = dispatcher.send_log(session, now)
        rows = {
            r.id: r
            for r in session.scalars(
                select(ContactRow).where(ContactRow.next_check_at.is_not(None))
            )
        }
        ledger = dispatcher._ledger(session, list(rows))
        suppressed = dispatcher._suppressed(session, [r.email_key for r in rows.values()])
        records = {cid: list(ledger.get(cid, [])) for cid in rows}
        touches = dispatcher._touches(
            session, [cid for cid, r in rows.items() if r.stage in NURTURE_STAGES]
        )
        waiting = {c.key: c for c in dispatcher._waiting_rows(session, until)}
        for _round in range(
            1 + max((len(s.sequence) for s in settings.segments.values()), default=0)
        ):
            candidates = list(waiting.values())
            waiting = {}
            for cid, row in rows.items():
                touch = touches.get(cid)
                candidate = (
                    dispatcher.nurture_candidate(row, touch, suppressed)
                    if row.stage in NURTURE_STAGES and touch is not None
                    else dispatcher.next_candidate(row, records[cid], suppressed)
                )
                if candidate is None:
                    continue
                if any(r.step_index == candidate.step_index for r in records[cid]):
                    continue
                candidates.append(candidate)
            by_key = {c.key: c for c in candidates}
            scheduled = schedule(
                dispatcher.due_dues(candidates), dispatcher.policy, log, start=now, until=until
            )
            if not scheduled:
                break
            for due, at in scheduled:
                c = by_key[due.key]  # type: ignore[index]
                template = dispatcher.template_of(c)
                planned.append(PlannedSend(at, c.email, c.segment, c.step_index + 1, template))
                records.setdefault(c.contact_id, []).append(StepRecord(c.step_index, "sent", at))
                if rows.get(c.contact_id) is not None and rows[c.contact_id].stage == "new":
                    rows[c.contact_id].stage = "contacted"
        session.rollback()
    planned.sort(key=lambda p: p.at)
    return planned


@dataclass(frozen=True)
class OutboxEntry:
    """One ledger row as people and scripts see it."""

    id: int
    email: str
    step: int
    subject: str
    state: str
    attempts: int
    message_id: str
    updated_at: datetime
    sent_at: datetime | None
    last_error: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "step": self.step,
            "subject": self.subject,
            "state": self.state,
            "attempts": self.attempts,
            "message_id": self.message_id,
            "updated_at": self.updated_at.isoformat(),
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
            "last_error": self.last_error,
        }


def list_outbox(store: Store, *, state: str | None = None) -> list[OutboxEntry]:
    """Ledger rows, newest first, optionally of one state."""
    query = (
        select(OutboxRow, ContactRow.email)
        .join(ContactRow, OutboxRow.contact_id == ContactRow.id)
        .order_by(OutboxRow.updated_at.desc(), OutboxRow.id.desc())
    )
    if state:
        query = query.where(OutboxRow.state == state)
    with store.session() as session:
        return [
            OutboxEntry(
                row.id,
                email,
                row.step_index + 1,
                row.subject,
                row.state,
                row.attempts,
                row.message_id,
                row.updated_at,
                row.sent_at,
                row.last_error,
            )
            for row, email in session.execute(query)
        ]


def resolve_outbox(dispatcher: Dispatcher, outbox_id: int, *, sent: bool, now: datetime) -> str:
    """Settle an ``unknown`` row: it was sent (record it), or send it again (same Message-ID)."""
    with dispatcher.store.session() as session:
        row = session.get(OutboxRow, outbox_id)
        if row is None:
            raise OutreachError(f"no outbox row {outbox_id}")
        if row.state != "unknown":
            raise OutreachError(
                f"outbox row {outbox_id} is {row.state!r}; only 'unknown' rows are resolved"
            )
        if sent:
            dispatcher._mark_sent(row, row.contact, row.updated_at)
            row.last_error = f"resolved by hand as sent at {now:%Y-%m-%d %H:%M} UTC"
            return "sent"
        row.state = "queued"
        row.next_attempt_at = None
        row.last_error = f"resolved by hand: send again ({now:%Y-%m-%d %H:%M} UTC)"
        return "queued"


def resume_sending(store: Store) -> str | None:
    """Lift a policy pause; returns the reason it was paused, or None if it wasn't."""
    with store.session() as session:
        row = session.get(StateRow, SENDING_PAUSED)
        if row is None:
            return None
        reason = row.value
        session.delete(row)
        return reason
