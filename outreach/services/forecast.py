"""Looking ahead without sending: the exact message a step would send (``preview``), and what
would be sent when over the next days (``plan``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from outreach.domain.pacing import schedule
from outreach.domain.sequencing import NURTURE_STAGES, StepRecord
from outreach.errors import OutreachError
from outreach.mail.compose import new_message_id
from outreach.services.contacts import find_contact
from outreach.services.dispatch import Dispatcher
from outreach.services.due import last_touches, ledger_records, suppressed_keys
from outreach.store.ledger import thread_rows
from outreach.store.models import ContactRow


def preview(dispatcher: Dispatcher, email: str, *, step: int | None, now: datetime) -> bytes:
    """The exact message (headers and body) the contact would get for a step (1-based)."""
    with dispatcher.store.session() as session:
        contact = find_contact(session, email)
        sequence = dispatcher.settings.segments[contact.segment].sequence
        if not sequence:
            raise OutreachError(f"segment {contact.segment!r} has no sequence steps")
        sent = thread_rows(session, contact.id, len(sequence))
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
        due = dispatcher.due
        log = due.send_log(session, now)
        rows = {
            r.id: r
            for r in session.scalars(
                select(ContactRow).where(ContactRow.next_check_at.is_not(None))
            )
        }
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
            by_key = {c.key: c for c in candidates}
            scheduled = schedule(due.due_sends(candidates), due.policy, log, start=now, until=until)
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
