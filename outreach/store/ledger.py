"""The delivery ledger: its rows, the per-message statements, the sending pauses (all, or one
recipient domain), suppression.

The statements that run once per message are built once, so SQLAlchemy reuses their compiled
form instead of rebuilding and re-keying them for every send.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, exists, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from outreach.domain.pipeline import CONTACTED, EXIT_STAGES, NEW
from outreach.domain.sequencing import ACTIVE_STAGES, REPLY_STEP_BASE
from outreach.domain.states import OutboxState
from outreach.store.models import (
    ContactRow,
    DomainPauseRow,
    OutboxRow,
    StageChangeRow,
    StateRow,
    SuppressionRow,
    UTCDateTime,
)

SENDING_PAUSED = "sending_paused"
# When a pause of all sending lifts itself (ISO 8601, UTC); no row: until resumed by hand.
SENDING_PAUSED_UNTIL = "sending_paused_until"
WAITING = (OutboxState.RETRY, OutboxState.QUEUED)


def _one_of(column: Any, values: Iterable[str]) -> ColumnElement[bool]:
    """``column IN (values)`` written out as ``=`` tests: an IN list is an "expanding"
    parameter that SQLAlchemy rewrites into the SQL at every execution; these are compiled
    once (the statements below run for every message)."""
    return or_(*(column == value for value in values))


def _none_of(column: Any, values: Iterable[str]) -> ColumnElement[bool]:
    return and_(*(column != value for value in values))


# A sequence step goes to contacts in new/contacted; a rule's reply (reply_with) to any
# contact that has not left (unsubscribed, bounced, do_not_contact).
STAGE_ALLOWS_ROW = or_(
    _one_of(ContactRow.stage, ACTIVE_STAGES),
    and_(OutboxRow.step_index >= REPLY_STEP_BASE, _none_of(ContactRow.stage, EXIT_STAGES)),
)

# The statements that run once per message, built once: SQLAlchemy then reuses their
# compiled form instead of rebuilding and re-keying them for every send.
NOW = bindparam("now", type_=UTCDateTime())
START = (
    update(OutboxRow)
    .where(
        OutboxRow.id == bindparam("oid"),
        _one_of(OutboxRow.state, WAITING),
        exists(
            select(ContactRow.id).where(
                ContactRow.id == OutboxRow.contact_id,
                STAGE_ALLOWS_ROW,
                ContactRow.held_since.is_(None),  # held for review: nothing until approved
                or_(ContactRow.paused_until.is_(None), ContactRow.paused_until <= NOW),
                ~exists(
                    select(SuppressionRow.id).where(
                        SuppressionRow.email_key == ContactRow.email_key
                    )
                ),
            )
        ),
        # All sending paused meanwhile (`sending pause` during a pass): the rest wait. A pause
        # whose end has come is lifted at the start of the pass (``lift_ended_pause``).
        ~exists(select(StateRow.key).where(StateRow.key == SENDING_PAUSED)),
    )
    .values(state=OutboxState.SENDING, attempts=OutboxRow.attempts + 1, updated_at=NOW)
)
MARK_SENT = (
    update(OutboxRow)
    .where(OutboxRow.id == bindparam("oid"))
    .values(state=OutboxState.SENT, sent_at=NOW, next_attempt_at=None, updated_at=NOW)
)
CHECK_AGAIN = (  # the next step is computed on the next pass
    update(ContactRow).where(ContactRow.id == bindparam("cid")).values(next_check_at=NOW)
)
# A first message moves the contact from new to contacted, with the next check, in one
# statement that locks the row; its rowcount says whether the history row follows.
FIRST_CONTACT = (
    update(ContactRow)
    .where(ContactRow.id == bindparam("cid"), ContactRow.stage == NEW)
    .values(stage=CONTACTED, updated_at=NOW, next_check_at=NOW)
)
CONTACTED_HISTORY = insert(StageChangeRow).values(
    contact_id=bindparam("cid"),
    at=NOW,
    from_stage=NEW,
    to_stage=CONTACTED,
    reason=bindparam("reason"),
)


def suppress(session: Session, key: str, reason: str, now: datetime) -> None:
    """Add an address to the suppression list (once)."""
    if session.scalar(select(SuppressionRow.id).where(SuppressionRow.email_key == key)) is None:
        session.add(SuppressionRow(email_key=key, reason=reason, created_at=now))


def new_row(
    contact_id: int,
    step_index: int,
    template: str,
    message_id: str,
    now: datetime,
    *,
    subject: str = "",
) -> OutboxRow:
    """A ``queued`` ledger row: nothing handed to SMTP yet, its Message-ID fixed for good."""
    return OutboxRow(**queued_row(contact_id, step_index, template, message_id, now, subject))


def queued_row(
    contact_id: int, step_index: int, template: str, message_id: str, now: datetime, subject: str
) -> dict[str, object]:
    """A ``queued`` ledger row's values (``add_queued`` writes many at once)."""
    return {
        "contact_id": contact_id,
        "step_index": step_index,
        "template": template,
        "message_id": message_id,
        "subject": subject,
        "state": OutboxState.QUEUED,
        "attempts": 0,
        "last_error": "",
        "created_at": now,
        "updated_at": now,
    }


def add_queued(session: Session, rows: Sequence[dict[str, object]]) -> list[int]:
    """Insert ``queued_row`` values in one statement; their ids, in the same order."""
    if not rows:
        return []
    statement = insert(OutboxRow).returning(OutboxRow.id, sort_by_parameter_order=True)
    return list(session.scalars(statement, list(rows)))


def mark_sent(
    connection: Connection,
    outbox_id: int,
    contact_id: int,
    step_index: int,
    message_id: str,
    now: datetime,
    *,
    maybe_new: bool = True,
) -> None:
    """Record a row as sent at ``now``: the contact is checked again on the next pass, and a
    first message moves it from ``new`` to ``contacted`` with the reason in its history.
    Two statements, three for a first message; ``maybe_new=False`` (the contact was past
    ``new`` when the pass read it) skips trying the move.

    Core statements on a connection (in a session: ``session.connection()``, its transaction):
    objects the session already holds for these rows are not refreshed."""
    values = {"oid": outbox_id, "cid": contact_id, "now": now}
    connection.execute(MARK_SENT, values)
    if maybe_new and connection.execute(FIRST_CONTACT, values).rowcount == 1:
        reason = f"step {step_index + 1} sent {message_id}"
        connection.execute(CONTACTED_HISTORY, {**values, "reason": reason})
    else:
        connection.execute(CHECK_AGAIN, values)


def thread_rows(session: Session, contact_id: int, before: int) -> list[tuple[str, str]]:
    """(Message-ID, subject) of the steps sent to a contact before step index ``before``: the
    conversation a threaded follow-up answers."""
    query = (
        select(OutboxRow.message_id, OutboxRow.subject)
        .where(
            OutboxRow.contact_id == contact_id,
            OutboxRow.step_index < before,
            OutboxRow.state == OutboxState.SENT,
        )
        .order_by(OutboxRow.step_index)
    )
    return [(m, s) for m, s in session.execute(query)]


def sending_paused(session: Session, now: datetime | None = None) -> str | None:
    """Why all sending is paused at ``now`` (default: the system clock), or None; a pause
    whose end has come counts as lifted."""
    row = session.get(StateRow, SENDING_PAUSED)
    if row is None:
        return None
    until = sending_paused_until(session)
    if until is not None and until <= (now or datetime.now(UTC)):
        return None
    return row.value


def sending_paused_until(session: Session) -> datetime | None:
    """When the pause of all sending lifts itself; None: it doesn't (or nothing is paused)."""
    row = session.get(StateRow, SENDING_PAUSED_UNTIL)
    if row is None or session.get(StateRow, SENDING_PAUSED) is None:
        return None
    return datetime.fromisoformat(row.value).astimezone(UTC)


def pause_sending(
    session: Session,
    reason: str,
    now: datetime,
    *,
    keep_first: bool,
    until: datetime | None = None,
) -> None:
    """Pause all sending until the therapist resumes it, or with ``until`` until then;
    ``keep_first`` keeps an earlier reason. A pause that ends never shortens one that
    doesn't: a pause with an end over an open-ended one changes nothing, and an open-ended
    one (a policy refusal) replaces a pause with an end."""
    row = session.get(StateRow, SENDING_PAUSED)
    ends = session.get(StateRow, SENDING_PAUSED_UNTIL)
    if row is not None and sending_paused(session, now) is None:
        for lifted in (row, ends):  # an earlier pause that has lifted itself
            if lifted is not None:
                session.delete(lifted)
        session.flush()
        row = ends = None
    if row is None:
        session.add(StateRow(key=SENDING_PAUSED, value=reason, updated_at=now))
    elif until is not None and ends is None:
        return  # already paused until resumed by hand
    elif not keep_first or ends is not None:
        row.value, row.updated_at = reason, now
    if until is None:
        if ends is not None:
            session.delete(ends)
        return
    value = until.astimezone(UTC).isoformat()
    if ends is None:
        session.add(StateRow(key=SENDING_PAUSED_UNTIL, value=value, updated_at=now))
    else:
        ends.value, ends.updated_at = value, now


def lift_ended_pause(session: Session, now: datetime) -> bool:
    """Remove a pause whose end has come (so ``START`` sends again); True if there was one."""
    if session.get(StateRow, SENDING_PAUSED) is None or sending_paused(session, now) is not None:
        return False
    resume_sending(session)
    return True


def resume_sending(session: Session) -> str | None:
    """Lift the pause; the reason it was paused, or None if it wasn't."""
    ends = session.get(StateRow, SENDING_PAUSED_UNTIL)
    if ends is not None:
        session.delete(ends)
    row = session.get(StateRow, SENDING_PAUSED)
    if row is None:
        return None
    session.delete(row)
    return row.value


def pause_domain(session: Session, domain: str, reason: str, now: datetime) -> int:
    """Pause sending to one recipient domain (kept until resumed; a new policy bounce from it
    only refreshes when it last refused us). Returns how many distinct domains refused us
    for policy within the last 24 hours, this one included."""
    domain = domain.lower()
    row = session.get(DomainPauseRow, domain)
    if row is None:
        session.add(DomainPauseRow(domain=domain, reason=reason, paused_at=now, last_policy_at=now))
    else:
        row.last_policy_at = max(row.last_policy_at, now)
    session.flush()
    recent = select(DomainPauseRow.domain).where(
        DomainPauseRow.last_policy_at > now - timedelta(hours=24)
    )
    return len(session.scalars(recent).all())


def paused_domains(session: Session) -> dict[str, str]:
    """Every paused recipient domain and why."""
    return {row.domain: row.reason for row in session.scalars(select(DomainPauseRow))}


def resume_domain(session: Session, domain: str) -> str | None:
    """Lift one domain's pause; why it was paused, or None if it wasn't."""
    row = session.get(DomainPauseRow, domain.lower())
    if row is None:
        return None
    session.delete(row)
    return row.reason
