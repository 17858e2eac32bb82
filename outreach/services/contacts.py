"""Contact services over the store: import, add, edit, list, show, export, referrals.

The CLI calls these and holds no logic of its own; tests call them directly.

Decisions:
- With ``[sending] hold_new``, every contact an import or ``contacts add`` creates is held
  (``held_since``) until ``outreach approve``; contacts that already exist are left as they are.
- An address on the suppression list (unsubscribed, bounced, removed while in an exit stage)
  or erased at its owner's request is never created again: an import skips and counts it,
  ``contacts add`` refuses it.
- Removing a contact, and erasing one at its owner's request: ``services/removal.py``.
- Editing a contact clears ``needs_data``, so the next pass tries it again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, TextIO, cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from outreach.domain.contacts_csv import (
    ContactRecord,
    FieldEdit,
    field_edit,
    find_segment,
    parse_contacts,
    segment_names,
    write_contacts,
)
from outreach.domain.fields import email_key, erased_key, full_name, normalize_email
from outreach.domain.pipeline import (
    NEW,
    REFERRING,
    Pipeline,
    StageChange,
    change_stage,
)
from outreach.domain.sequencing import ACTIVE_STAGES, NURTURE_STAGES
from outreach.errors import ConfigError, ContactNotFound, ImportProblems, StoreError
from outreach.store.database import Store, in_chunks
from outreach.store.models import (
    ContactRow,
    InboundEventRow,
    OutboxRow,
    ReferralRow,
    StageChangeRow,
    SuppressionRow,
)

if TYPE_CHECKING:
    from outreach.config import Settings

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
    #: Held for review since then (``[sending] hold_new``), until ``outreach approve``.
    held_since: datetime | None = None
    #: What its templates need that it lacks ("first_name"); it waits until that is added.
    needs_data: str | None = None

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
            held_since=row.held_since,
            needs_data=row.needs_data,
        )

    @property
    def name(self) -> str:
        """First and last name, or the address when both are missing."""
        return full_name(self.first_name, self.last_name) or self.email

    @property
    def waiting(self) -> str:
        """Why nothing is sent to it now, beyond its stage ("held", "needs data: first_name");
        empty when nothing holds it."""
        reasons = ["held"] if self.held_since is not None else []
        if self.needs_data:
            reasons.append(f"needs data: {self.needs_data}")
        return "; ".join(reasons)

    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = _jsonable(asdict(self))
        return result


def template_fields(row: ContactRow) -> dict[str, object]:
    """A stored contact as the template context builder takes it (``template_context``):
    what a template may show of it, and nothing else."""
    return {
        "email": row.email,
        "first_name": row.first_name,
        "last_name": row.last_name,
        "title": row.title,
        "organization": row.organization,
        "timezone": row.timezone,
        "tags": list(row.tags or []),
        "custom": dict(row.custom or {}),
    }


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
    #: New addresses not created: suppressed, or erased at their owner's request.
    skipped_suppressed: int = 0
    #: How many of the created contacts wait for ``outreach approve``.
    held: int = 0
    dry_run: bool = False
    by_segment: dict[str, int] = field(default_factory=dict)
    encoding: str = "UTF-8"


def segment_names_of(settings: Settings) -> dict[str, str]:
    """Every spelling that names a segment (its name, its label, an ``[import.segment_labels]``
    label; any case) -> the segment; ConfigError for a label mapped to no segment."""
    names, problems = segment_names(
        {name: segment.label for name, segment in settings.segments.items()},
        settings.import_.segment_labels,
    )
    if problems:
        raise ConfigError(problems)
    return names


def resolve_segment(settings: Settings, value: str, option: str = "--segment") -> str:
    """The segment named by ``value`` (a segment's name or label), or ConfigError naming
    ``option``."""
    try:
        return find_segment(value, segment_names_of(settings))
    except ValueError as exc:
        raise ConfigError([f"{option}: {exc}"]) from None


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
    names: Mapping[str, str] | None = None,
    segment_column: str = "",
    encoding: str = "",
    hold: bool = False,
) -> ImportSummary:
    """Import a contacts CSV in one transaction: every row, or nothing and ImportProblems.

    Addresses already in the store are skipped and counted, or with ``update`` have the
    file's columns written over them (custom fields merged). Suppressed and erased addresses
    are skipped and counted. Every new contact, and every stage the file changes, gets a
    history entry naming the file and line; with ``hold`` new contacts are held for review.
    ``names``, ``segment_column`` and ``encoding``: see ``contacts_csv.parse_contacts``.
    """
    parsed = parse_contacts(
        data,
        segments=segments,
        stages=pipeline.stages,
        default_segment=default_segment,
        progress=progress,
        names=names,
        segment_column=segment_column,
        encoding=encoding,
    )
    if parsed.problems:
        raise ImportProblems(source, parsed.problems)
    summary = ImportSummary(
        source=source, rows=len(parsed.records), dry_run=dry_run, encoding=parsed.encoding
    )
    try:
        with store.session() as session:
            existing = _existing(session, [r.email for r in parsed.records])
            new = [r for r in parsed.records if email_key(r.email) not in existing]
            barred = _suppressed(session, [email_key(r.email) for r in new])
            summary.skipped_suppressed = len(barred)
            new = [r for r in new if email_key(r.email) not in barred]
            summary.created = len(new)
            summary.held = len(new) if hold else 0
            for record in new:
                summary.by_segment[record.segment] = summary.by_segment.get(record.segment, 0) + 1
            if not update:
                summary.skipped_existing = len(parsed.records) - len(new) - len(barred)
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
            _insert_new(session, new, now, f"imported from {source}", hold=hold)
    except IntegrityError as exc:
        raise StoreError(
            f"{source}: another process added some of these addresses while importing; "
            "nothing was imported, run the import again"
        ) from exc
    return summary


def _suppressed(session: Session, keys: Sequence[str]) -> set[str]:
    """The keys among ``keys`` that are suppressed, as they are or erased (hashed)."""
    hashed = {erased_key(key): key for key in keys}
    found: set[str] = set()
    for chunk in in_chunks([*keys, *hashed]):
        for stored in session.scalars(
            select(SuppressionRow.email_key).where(SuppressionRow.email_key.in_(chunk))
        ):
            found.add(hashed.get(stored, stored))
    return found


def add_contact(
    store: Store,
    pipeline: Pipeline,
    names: Mapping[str, str],
    email: str,
    fields: Sequence[str],
    *,
    now: datetime,
    hold: bool = False,
) -> Contact:
    """Add one contact from ``FIELD=VALUE`` strings (``segment`` among them), checked as an
    import checks a row; held for review with ``hold``. ConfigError lists every problem,
    with the address or field it is about; nothing is added then."""
    problems: list[str] = []
    try:
        address = normalize_email(email)
    except ValueError as exc:
        problems.append(f"{email}: {exc}")
        address = email
    edits = _edits(fields, names, (), problems)
    if "segment" not in edits and not problems:
        problems.append("--segment: every contact belongs to a segment; name one")
    if problems:
        raise ConfigError(problems)
    standard = {n: e.value for n, e in edits.items() if not e.custom}
    record = ContactRecord(
        line=0,
        email=address,
        custom={n: str(e.value) for n, e in edits.items() if e.custom and e.value is not None},
        **standard,  # type: ignore[arg-type]  # each checked by field_edit for its field
    )
    key = email_key(address)
    try:
        with store.session() as session:
            if _existing(session, [address]):
                raise ConfigError(
                    [f"{address} is already a contact; change it with 'outreach contacts edit'"]
                )
            if _suppressed(session, [key]):
                raise ConfigError([f"{address}: {_barred(session, key)}; not added"])
            _insert_new(session, [record], now, "added by hand", hold=hold)
            return Contact.from_row(find_contact(session, address))
    except IntegrityError as exc:
        raise StoreError(f"{address} was added by another process at the same time") from exc


def _barred(session: Session, key: str) -> str:
    if session.scalar(select(SuppressionRow.id).where(SuppressionRow.email_key == key)):
        return "the address is suppressed (unsubscribed, bounced or stopped by hand)"
    return "the address was erased at its owner's request and must not be contacted again"


def _edits(
    fields: Sequence[str],
    names: Mapping[str, str],
    custom: Sequence[str],
    problems: list[str],
) -> dict[str, FieldEdit]:
    edits: dict[str, FieldEdit] = {}
    for assignment in fields:
        try:
            edit = field_edit(assignment, names, custom)
        except ValueError as exc:
            problems.append(f"--set {exc}")
            continue
        edits[edit.name] = edit
    return edits


@dataclass(frozen=True)
class ContactEdit:
    """What ``edit_contact`` changed: each field's (before, after)."""

    contact: Contact
    changes: dict[str, tuple[object, object]]


def edit_contact(
    store: Store,
    names: Mapping[str, str],
    email: str,
    fields: Sequence[str],
    *,
    now: datetime,
) -> ContactEdit:
    """Set (``FIELD=VALUE``) or clear (``FIELD=``) fields of one contact; a change clears
    ``needs_data`` and has the next pass look at it again. ContactNotFound for an unknown
    address; ConfigError lists every bad field, and nothing is changed then."""
    with store.session() as session:
        row = find_contact(session, email)
        problems: list[str] = []
        edits = _edits(fields, names, list(row.custom or {}), problems)
        if problems:
            raise ConfigError(problems)
        custom = dict(row.custom or {})
        changes: dict[str, tuple[object, object]] = {}
        for name, edit in edits.items():
            before: object
            if edit.custom:
                before = custom.pop(name, None)
                if edit.value is not None:
                    custom[name] = str(edit.value)
            else:
                before = getattr(row, name)
                value = edit.value
                if name == "tags":
                    value = list(value) if isinstance(value, tuple) else []
                setattr(row, name, value)
            after = custom.get(name) if edit.custom else getattr(row, name)
            if before != after and not (before in (None, []) and after in (None, [])):
                changes[name] = (before, after)
        if custom != (row.custom or {}):
            row.custom = custom
        if changes:
            row.updated_at = now
            row.needs_data = None
            row.next_check_at = now
        return ContactEdit(Contact.from_row(row), changes)


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
    session: Session,
    records: Sequence[ContactRecord],
    now: datetime,
    reason: str,
    *,
    hold: bool = False,
) -> None:
    """Insert new contacts, each with its first history entry: ``reason`` and its line."""
    if not records:
        return
    # A bulk INSERT without RETURNING, then one look-up of the new ids: RETURNING in
    # parameter order costs quadratic time in SQLAlchemy on large files. Core inserts on the
    # tables: the ORM's bulk insert splits the rows into a statement per run of rows whose
    # empty fields differ (thousands of statements for a real export).
    session.execute(
        insert(cast(Table, ContactRow.__table__)),
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
                "held_since": now if hold else None,
            }
            for r in records
        ],
    )
    ids_by_key = _ids(session, [email_key(r.email) for r in records])
    ids = [ids_by_key[email_key(r.email)] for r in records]
    session.execute(
        insert(cast(Table, StageChangeRow.__table__)),
        [
            {
                "contact_id": contact_id,
                "at": now,
                "from_stage": None,
                "to_stage": r.stage or NEW,
                "reason": f"{reason} line {r.line}" if r.line else reason,
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
        row.needs_data = None  # another stage, other messages: the next render tells again
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
