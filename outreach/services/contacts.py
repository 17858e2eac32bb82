"""Contact services over the store: import, list, show, export, stage changes and referrals.

The CLI calls these and holds no logic of its own; tests call them directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any, TextIO

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from outreach.domain.contacts_csv import ContactRecord, parse_contacts, write_contacts
from outreach.domain.fields import email_key, full_name, normalize_email
from outreach.domain.pipeline import NEW, REFERRING, Pipeline, StageChange, change_stage
from outreach.domain.sequencing import ACTIVE_STAGES, NURTURE_STAGES
from outreach.errors import ContactNotFound, ImportProblems, StoreError
from outreach.store.database import Store, in_chunks
from outreach.store.models import (
    ContactRow,
    InboundEventRow,
    OutboxRow,
    ReferralRow,
    StageChangeRow,
)

_UPDATABLE = ("first_name", "last_name", "title", "organization", "segment", "timezone", "tags")


@dataclass(frozen=True)
class Contact:
    """A referral source as people and scripts see it."""

    email: str
    first_name: str | None
    last_name: str | None
    title: str | None
    organization: str | None
    segment: str
    timezone: str | None
    tags: list[str]
    custom: dict[str, str]
    stage: str
    paused_until: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: ContactRow) -> Contact:
        return cls(
            email=row.email,
            first_name=row.first_name,
            last_name=row.last_name,
            title=row.title,
            organization=row.organization,
            segment=row.segment,
            timezone=row.timezone,
            tags=list(row.tags or []),
            custom=dict(row.custom or {}),
            stage=row.stage,
            paused_until=row.paused_until,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    @property
    def name(self) -> str:
        """First and last name, or the address when both are missing."""
        return full_name(self.first_name, self.last_name) or self.email

    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = _jsonable(asdict(self))
        return result


def template_fields(row: ContactRow) -> dict[str, object]:
    """A stored contact as the template context builder takes it."""
    return asdict(Contact.from_row(row))


@dataclass(frozen=True)
class Referral:
    """A referral received from a source (never anything about the client)."""

    received_on: date
    note: str
    recorded_at: datetime


@dataclass(frozen=True)
class SentMessage:
    """An outreach message in the ledger (its body is not kept)."""

    step: int
    subject: str
    state: str
    at: datetime
    message_id: str


@dataclass(frozen=True)
class InboundEvent:
    """An inbound message from or about the contact: its kind and effect, never its body."""

    at: datetime
    kind: str
    message_id: str
    effect: str


@dataclass(frozen=True)
class ContactHistory:
    """One contact with every message, stage change and referral, oldest first."""

    contact: Contact
    stage_changes: list[StageChange]
    referrals: list[Referral]
    messages: list[SentMessage] = field(default_factory=list)
    inbound: list[InboundEvent] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.contact.to_json(),
            "messages": [_jsonable(asdict(m)) for m in self.messages],
            "inbound": [_jsonable(asdict(e)) for e in self.inbound],
            "stage_changes": [_jsonable(asdict(c)) for c in self.stage_changes],
            "referrals": [_jsonable(asdict(r)) for r in self.referrals],
        }

    def timeline(self) -> list[tuple[datetime, str]]:
        """Every event of the relationship as (when, what), oldest first."""
        events = [(m.at, f"{m.state} step {m.step}: {m.subject}") for m in self.messages]
        events += [(e.at, f"received {e.kind} {e.message_id}: {e.effect}") for e in self.inbound]
        events += [
            (c.at, f"{c.from_stage or '(none)'} -> {c.to_stage}  {c.reason}")
            for c in self.stage_changes
        ]
        events += [
            (
                r.recorded_at,
                f"referral received {r.received_on}" + (f": {r.note}" if r.note else ""),
            )
            for r in self.referrals
        ]
        return sorted(events, key=lambda event: event[0])


@dataclass
class ImportSummary:
    """What an import did (or, with ``dry_run``, would do)."""

    source: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped_existing: int = 0
    dry_run: bool = False
    by_segment: dict[str, int] = field(default_factory=dict)


def import_contacts(
    store: Store,
    pipeline: Pipeline,
    segments: Sequence[str],
    data: bytes,
    *,
    source: str,
    now: datetime,
    update: bool = False,
    dry_run: bool = False,
    default_segment: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:
    """Import a contacts CSV in one transaction: every row, or nothing and ImportProblems.

    Addresses already in the store are skipped and counted, or with ``update`` have the
    file's columns written over them (custom fields merged). Every new contact, and every
    stage the file changes, gets a history entry naming the file and line.
    """
    parsed = parse_contacts(
        data,
        segments=segments,
        stages=pipeline.stages,
        default_segment=default_segment,
        progress=progress,
    )
    if parsed.problems:
        raise ImportProblems(source, parsed.problems)
    summary = ImportSummary(source=source, rows=len(parsed.records), dry_run=dry_run)
    try:
        with store.session() as session:
            existing = _existing(session, [r.email for r in parsed.records])
            new = [r for r in parsed.records if email_key(r.email) not in existing]
            summary.created = len(new)
            for record in new:
                summary.by_segment[record.segment] = summary.by_segment.get(record.segment, 0) + 1
            if not update:
                summary.skipped_existing = len(parsed.records) - len(new)
            else:
                for record in parsed.records:
                    row = existing.get(email_key(record.email))
                    if row is None:
                        continue
                    if _update_row(row, record, pipeline, now, source):
                        summary.updated += 1
                    else:
                        summary.unchanged += 1
            if dry_run:
                session.rollback()
                return summary
            _insert_new(session, new, now, source)
    except IntegrityError as exc:
        raise StoreError(
            f"{source}: another process added some of these addresses while importing; "
            "nothing was imported, run the import again"
        ) from exc
    return summary


def _existing(session: Session, emails: Sequence[str]) -> dict[str, ContactRow]:
    keys = [email_key(e) for e in emails]
    found: dict[str, ContactRow] = {}
    for chunk in in_chunks(keys):
        for row in session.scalars(select(ContactRow).where(ContactRow.email_key.in_(chunk))):
            found[row.email_key] = row
    return found


def _ids(session: Session, keys: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in in_chunks(keys):
        query = select(ContactRow.email_key, ContactRow.id).where(ContactRow.email_key.in_(chunk))
        found.update((row[0], row[1]) for row in session.execute(query))
    return found


def _insert_new(
    session: Session, records: Sequence[ContactRecord], now: datetime, source: str
) -> None:
    if not records:
        return
    # A bulk INSERT without RETURNING, then one look-up of the new ids: RETURNING in
    # parameter order costs quadratic time in SQLAlchemy on large files.
    session.execute(
        insert(ContactRow),
        [
            {
                "email": r.email,
                "email_key": email_key(r.email),
                "first_name": r.first_name,
                "last_name": r.last_name,
                "title": r.title,
                "organization": r.organization,
                "segment": r.segment,
                "timezone": r.timezone,
                "tags": list(r.tags),
                "custom": dict(r.custom),
                "stage": r.stage or NEW,
                "created_at": now,
                "updated_at": now,
                "next_check_at": now,
            }
            for r in records
        ],
    )
    ids_by_key = _ids(session, [email_key(r.email) for r in records])
    ids = [ids_by_key[email_key(r.email)] for r in records]
    session.execute(
        insert(StageChangeRow),
        [
            {
                "contact_id": contact_id,
                "at": now,
                "from_stage": None,
                "to_stage": r.stage or NEW,
                "reason": f"imported from {source} line {r.line}",
            }
            for contact_id, r in zip(ids, records, strict=True)
        ],
    )


def _update_row(
    row: ContactRow, record: ContactRecord, pipeline: Pipeline, now: datetime, source: str
) -> bool:
    changed = False
    for name in _UPDATABLE:
        if name not in record.columns:
            continue
        value = getattr(record, name)
        value = list(value) if name == "tags" else value
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    custom = {**(row.custom or {}), **record.custom}
    if custom != row.custom:
        row.custom = custom
        changed = True
    if row.email != record.email:
        row.email = record.email  # same address, new spelling of its case
        changed = True
    if "stage" in record.columns and record.stage:
        reason = f"updated from {source} line {record.line}"
        changed = move_contact(row, pipeline, record.stage, now, reason) is not None or changed
    if changed:
        row.updated_at = now
    return changed


def move_contact(
    row: ContactRow, pipeline: Pipeline, target: str, now: datetime, reason: str
) -> StageChange | None:
    """Move a stored contact to ``target`` and record why; None when it was already there."""
    change = change_stage(pipeline, row.stage, target, at=now, reason=reason)
    if change is not None:
        row.stage = change.to_stage
        row.updated_at = now
        if change.to_stage in ACTIVE_STAGES | NURTURE_STAGES:
            # Back in a sequence, or kept in touch by check-ins: let the dispatcher look again.
            row.next_check_at = now
        session = Session.object_session(row)
        assert session is not None
        # Added by id, not through ``row.history``, which would load the whole history first.
        session.add(
            StageChangeRow(
                contact_id=row.id,
                at=change.at,
                from_stage=change.from_stage,
                to_stage=change.to_stage,
                reason=change.reason,
            )
        )
    return change


def list_contacts(
    store: Store, *, segment: str | None = None, stage: str | None = None
) -> list[Contact]:
    """Contacts ordered by segment, then last and first name, optionally filtered."""
    query = select(ContactRow).order_by(
        ContactRow.segment, ContactRow.last_name, ContactRow.first_name, ContactRow.email_key
    )
    if segment:
        query = query.where(ContactRow.segment == segment)
    if stage:
        query = query.where(ContactRow.stage == stage)
    with store.session() as session:
        return [Contact.from_row(row) for row in session.scalars(query)]


def count_by_segment_and_stage(store: Store) -> dict[tuple[str, str], int]:
    """How many contacts sit in each (segment, stage)."""
    query = select(ContactRow.segment, ContactRow.stage, func.count()).group_by(
        ContactRow.segment, ContactRow.stage
    )
    with store.session() as session:
        return {(seg, stage): n for seg, stage, n in session.execute(query)}


def show_contact(store: Store, email: str) -> ContactHistory:
    """One contact and its whole history."""
    with store.session() as session:
        row = find_contact(session, email, load_history=True)
        return ContactHistory(
            contact=Contact.from_row(row),
            stage_changes=[
                StageChange(at=c.at, from_stage=c.from_stage, to_stage=c.to_stage, reason=c.reason)
                for c in row.history
            ],
            referrals=[
                Referral(received_on=r.received_on, note=r.note, recorded_at=r.recorded_at)
                for r in row.referrals
            ],
            messages=[
                SentMessage(
                    m.step_index + 1, m.subject, m.state, m.sent_at or m.updated_at, m.message_id
                )
                for m in session.scalars(
                    select(OutboxRow)
                    .where(OutboxRow.contact_id == row.id)
                    .order_by(OutboxRow.step_index)
                )
            ],
            inbound=[
                InboundEvent(e.received_at, e.kind, e.message_key, e.effect)
                for e in session.scalars(
                    select(InboundEventRow)
                    .where(InboundEventRow.contact_id == row.id)
                    .order_by(InboundEventRow.received_at, InboundEventRow.id)
                )
            ],
        )


def set_stage(
    store: Store, pipeline: Pipeline, email: str, stage: str, *, now: datetime, note: str = ""
) -> StageChange | None:
    """Move a contact by hand; returns the change, or None when it was already there."""
    pipeline.require(stage)
    reason = f"set by hand: {note}" if note.strip() else "set by hand"
    with store.session() as session:
        row = find_contact(session, email, load_history=True)
        return move_contact(row, pipeline, stage, now, reason)


def add_referral(
    store: Store,
    pipeline: Pipeline,
    email: str,
    *,
    received_on: date,
    now: datetime,
    note: str = "",
) -> StageChange | None:
    """Record a referral from this source and move it to ``referring``.

    Returns the stage change, or None when the source was already referring.
    """
    with store.session() as session:
        row = find_contact(session, email, load_history=True)
        row.referrals.append(ReferralRow(received_on=received_on, note=note, recorded_at=now))
        row.updated_at = now
        return move_contact(row, pipeline, REFERRING, now, f"referral received {received_on}")


def export_contacts(store: Store, out: TextIO) -> int:
    """Write every contact as CSV that ``import_contacts`` reads back unchanged."""
    return write_contacts((c.to_json() for c in _iter_contacts(store)), out)


def _iter_contacts(store: Store) -> Iterator[Contact]:
    with store.session() as session:
        for row in session.scalars(select(ContactRow).order_by(ContactRow.id)):
            yield Contact.from_row(row)


def find_contact(session: Session, email: str, *, load_history: bool = False) -> ContactRow:
    """The stored contact with this address (any case), or ContactNotFound."""
    try:
        key = email_key(normalize_email(email))
    except ValueError:
        key = email_key(email.strip())
    query = select(ContactRow).where(ContactRow.email_key == key)
    if load_history:
        query = query.options(selectinload(ContactRow.history), selectinload(ContactRow.referrals))
    row = session.scalars(query).first()
    if row is None:
        raise ContactNotFound(email)
    return row


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value
