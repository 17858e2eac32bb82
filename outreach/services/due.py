"""Which steps are due, and when: contacts and the ledger read into candidates, for the
dispatch pass and for ``plan``. Reading (``scan``) and writing what a scan found (``settle``:
finished sequences to ``no_response``, each contact's next check time) are separate calls.

A contact held for review (``held_since``, ``[sending] hold_new``) has nothing due: a scan
gives it no next check, and ``outreach approve`` sets one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.orm import Session

from outreach.config import Settings
from outreach.domain.business_days import BusinessCalendar, SendingWindow, make_calendar
from outreach.domain.pacing import DueSend, Policy, SendLog
from outreach.domain.pipeline import CONTACTED, NO_RESPONSE
from outreach.domain.sequencing import (
    ACTIVE_STAGES,
    NURTURE_STAGES,
    NURTURE_STEP_BASE,
    REPLY_STEP_BASE,
    DueStep,
    StepRecord,
    Touch,
    finished_at,
    next_nurture,
    next_step,
)
from outreach.domain.states import OutboxState
from outreach.services.contacts import move_contact
from outreach.store.database import Store, in_chunks
from outreach.store.ledger import (
    SENDING_PAUSED,
    STAGE_ALLOWS_ROW,
    WAITING,
)
from outreach.store.models import (
    ContactRow,
    DomainPauseRow,
    OutboxRow,
    StageChangeRow,
    StateRow,
    SuppressionRow,
)

HISTORY_WINDOW = timedelta(hours=48)


@dataclass(frozen=True)
class Candidate:
    """A step that may be sent now or later."""

    contact_id: int
    email: str
    organization: str | None
    segment: str
    step_index: int
    due_at: datetime
    zone: ZoneInfo
    calendar: BusinessCalendar
    outbox_id: int | None = None  # an existing retry/queued row, resent with its Message-ID
    template: str | None = None  # that row's template

    @property
    def key(self) -> tuple[int, int]:
        return (self.contact_id, self.step_index)


@dataclass
class DueScan:
    """What one look at the due contacts found: the steps to send now, and for the others when
    to look again (None: not until a send or a stage change) or that their sequence is over."""

    candidates: list[Candidate] = field(default_factory=list)
    next_checks: list[tuple[int, datetime | None]] = field(default_factory=list)  # contact ids
    finished: list[ContactRow] = field(default_factory=list)


class DueSteps:
    """Reads what is due for one practice's configuration; the dispatcher sends it."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        sending = settings.sending
        self.practice_zone = ZoneInfo(settings.practice.timezone)
        self.base_calendar = make_calendar(
            sending.days,
            sending.holidays_country,
            sending.holidays_subdivision,
            [(b.start, b.end) for b in sending.blackouts],
        )
        self.policy = Policy(
            window=SendingWindow(sending.start_time, sending.end_time),
            practice_zone=self.practice_zone,
            max_per_hour=sending.max_per_hour,
            max_per_day=sending.max_per_day,
            min_gap=timedelta(seconds=sending.min_gap_seconds),
            jitter=timedelta(seconds=sending.jitter_seconds),
            per_organization_per_day=sending.per_organization_per_day,
        )
        self.pipeline = settings.the_pipeline

    def calendar_for(self, segment: str) -> BusinessCalendar:
        blackouts = self.settings.segments[segment].blackouts
        return self.base_calendar.with_blackouts([(b.start, b.end) for b in blackouts])

    def zone_for(self, timezone: str | None) -> ZoneInfo:
        return ZoneInfo(timezone) if timezone else self.practice_zone

    def scan(self, session: Session, now: datetime) -> DueScan:
        """Steps due by ``now``, and what ``settle`` should write for the contacts looked at.
        Reads only. The due contacts are read a chunk at a time and only what the pass needs
        of them is kept: a backlog of thousands never sits in memory as rows all at once."""
        found = DueScan()
        due = session.scalars(
            # Only the next_check_at index: a stage condition here lets SQLite's planner
            # scan every "new" contact instead. Rows that left the active stages are read
            # once more and get no next check (see _examine).
            select(ContactRow.id).where(ContactRow.next_check_at <= now).order_by(ContactRow.id)
        ).all()
        for chunk in in_chunks(due):
            rows = session.scalars(select(ContactRow).where(ContactRow.id.in_(chunk))).all()
            ledger = ledger_records(session, chunk)
            suppressed = suppressed_keys(session, [r.email_key for r in rows])
            touches = last_touches(session, [r.id for r in rows if r.stage in NURTURE_STAGES])
            for row in rows:
                candidate, check_at = self._examine(
                    row, ledger.get(row.id, []), suppressed, now, touches.get(row.id)
                )
                if candidate is not None:
                    found.candidates.append(candidate)
                elif check_at is not None and check_at <= now and row.stage == CONTACTED:
                    found.finished.append(row)
                else:
                    found.next_checks.append((row.id, check_at))
        found.candidates += self.waiting(session, now)
        return found

    def settle(self, session: Session, found: DueScan, now: datetime) -> list[str]:
        """Write what a scan found (in the scan's session): finished sequences move to
        no_response, every other contact looked at gets its next check time. Returns the
        addresses whose sequence finished."""
        for row in found.finished:
            move_contact(row, self.pipeline, NO_RESPONSE, now, "sequence finished without a reply")
            row.next_check_at = None
        if found.next_checks:
            session.execute(
                update(ContactRow),
                [{"id": cid, "next_check_at": at} for cid, at in found.next_checks],
            )
        return [row.email for row in found.finished]

    def next_candidate(
        self, row: ContactRow, records: Sequence[StepRecord], suppressed: set[str]
    ) -> Candidate | None:
        """The contact's next sequence step, whenever it falls due (None: nothing to send)."""
        segment = self.settings.segments.get(row.segment)
        if segment is None or row.held_since is not None:
            return None  # a segment removed from the config, or held for review
        zone, calendar = self.zone_for(row.timezone), self.calendar_for(row.segment)
        step = next_step(
            stage=row.stage,
            suppressed=row.email_key in suppressed,
            enrolled_at=row.created_at,
            delays=[s.delay_business_days for s in segment.sequence],
            records=records,
            calendar=calendar,
            zone=zone,
            paused_until=row.paused_until,
        )
        return None if step is None else self._candidate(row, step)

    def nurture_candidate(
        self, row: ContactRow, touch: Touch, suppressed: set[str]
    ) -> Candidate | None:
        """An engaged or referring source's next check-in, whenever it falls due."""
        if row.held_since is not None:
            return None
        segment = self.settings.segments[row.segment]
        due = next_nurture(
            stage=row.stage,
            suppressed=row.email_key in suppressed,
            every_days=segment.nurture_every_days,
            touch=touch,
            paused_until=row.paused_until,
        )
        return None if due is None else self._candidate(row, due)

    def template_of(self, candidate: Candidate) -> str:
        """The template a candidate step sends: its row's, the check-in's, or the sequence's."""
        if candidate.template is not None:
            return candidate.template
        segment = self.settings.segments[candidate.segment]
        if candidate.step_index >= NURTURE_STEP_BASE:
            return segment.nurture_template
        return segment.sequence[candidate.step_index].template

    def _candidate(self, row: ContactRow, due: DueStep) -> Candidate:
        return Candidate(
            contact_id=row.id,
            email=row.email,
            organization=row.organization,
            segment=row.segment,
            step_index=due.step_index,
            due_at=due.due_at,
            zone=self.zone_for(row.timezone),
            calendar=self.calendar_for(row.segment),
        )

    def _examine(
        self,
        row: ContactRow,
        records: Sequence[StepRecord],
        suppressed: set[str],
        now: datetime,
        touch: Touch | None = None,
    ) -> tuple[Candidate | None, datetime | None]:
        if row.held_since is not None:
            return None, None  # held for review: `outreach approve` sets the next check
        segment = self.settings.segments.get(row.segment)
        if segment is not None and row.stage in NURTURE_STAGES and touch is not None:
            candidate = self.nurture_candidate(row, touch, suppressed)
        elif segment is None or row.stage not in ACTIVE_STAGES:
            return None, None  # removed segment, or the sequence has stopped: no more checks
        else:
            candidate = self.next_candidate(row, records, suppressed)
            if candidate is None:
                done = finished_at(
                    stage=row.stage,
                    steps=len(segment.sequence),
                    records=records,
                    after_business_days=self.settings.sending.no_response_after_business_days,
                    calendar=self.calendar_for(row.segment),
                    zone=self.zone_for(row.timezone),
                )
                return None, done
        if candidate is None:
            return None, None  # nothing until a send or a stage change sets the next check
        if candidate.due_at > now:
            return None, candidate.due_at
        return candidate, row.next_check_at

    def waiting(self, session: Session, now: datetime) -> list[Candidate]:
        """Ledger rows waiting to be (re)sent by ``now``: retries, queued rule replies."""
        query = (
            select(OutboxRow, ContactRow)
            .join(ContactRow, OutboxRow.contact_id == ContactRow.id)
            .where(
                OutboxRow.state.in_(WAITING),
                or_(OutboxRow.next_attempt_at.is_(None), OutboxRow.next_attempt_at <= now),
                STAGE_ALLOWS_ROW,
                ContactRow.held_since.is_(None),
            )
        )
        return [
            Candidate(
                contact_id=contact.id,
                email=contact.email,
                organization=contact.organization,
                segment=contact.segment,
                step_index=row.step_index,
                due_at=row.next_attempt_at or now,
                zone=self.zone_for(contact.timezone),
                calendar=self.calendar_for(contact.segment),
                outbox_id=row.id,
                template=row.template,
            )
            for row, contact in session.execute(query)
            if contact.segment in self.settings.segments
        ]

    def send_log(self, session: Session, now: datetime) -> SendLog:
        """Recent sends (and sends in flight), which pacing keeps its distance from."""
        query = (
            select(
                OutboxRow.sent_at, OutboxRow.updated_at, OutboxRow.state, ContactRow.organization
            )
            .join(ContactRow, OutboxRow.contact_id == ContactRow.id)
            .where(
                or_(
                    OutboxRow.sent_at >= now - HISTORY_WINDOW,
                    OutboxRow.state.in_((OutboxState.SENDING, OutboxState.UNKNOWN)),
                )
            )
        )
        sends = [
            (sent_at or updated, org) for sent_at, updated, _state, org in session.execute(query)
        ]
        return SendLog.of(sends, self.practice_zone)

    @staticmethod
    def backlog_mark(session: Session, now: datetime) -> tuple[object, ...]:
        """What a scan at ``now`` would start from, in a few index reads: the contacts due by
        then (how many, their latest change), the ledger rows waiting, the paused domains and
        the pause of all sending. While it stays the same, a scan finds the same steps."""
        due = session.execute(
            select(func.count(), func.max(ContactRow.updated_at)).where(
                ContactRow.next_check_at <= now
            )
        ).one()
        waiting = session.execute(
            select(func.count(), func.max(OutboxRow.id)).where(
                OutboxRow.state.in_(WAITING),
                or_(OutboxRow.next_attempt_at.is_(None), OutboxRow.next_attempt_at <= now),
            )
        ).one()
        pauses = session.execute(
            select(func.count(), func.max(DomainPauseRow.last_policy_at))
        ).one()
        paused = session.get(StateRow, SENDING_PAUSED) is not None
        return (*due, *waiting, *pauses, paused)

    @staticmethod
    def due_sends(candidates: Sequence[Candidate]) -> list[DueSend]:
        """The candidates as pacing takes them."""
        return [DueSend(c.key, c.due_at, c.zone, c.calendar, c.organization) for c in candidates]


def last_touches(session: Session, contact_ids: Sequence[int]) -> dict[int, Touch]:
    """When we were last in touch with each source, and its nurture rows so far."""
    last: dict[int, datetime] = {}
    nurtures: dict[int, tuple[int, bool]] = {}
    in_flight = case(
        (OutboxRow.state.in_((*WAITING, OutboxState.SENDING, OutboxState.UNKNOWN)), 1), else_=0
    )
    for chunk in in_chunks(contact_ids):
        for query in (
            select(OutboxRow.contact_id, func.max(OutboxRow.sent_at))
            .where(OutboxRow.contact_id.in_(chunk))
            .group_by(OutboxRow.contact_id),
            select(StageChangeRow.contact_id, func.max(StageChangeRow.at))
            .where(StageChangeRow.contact_id.in_(chunk))
            .group_by(StageChangeRow.contact_id),
        ):
            for contact_id, at in session.execute(query):
                if at is not None and (contact_id not in last or at > last[contact_id]):
                    last[contact_id] = at
        counts = (
            select(OutboxRow.contact_id, func.count(), func.sum(in_flight))
            .where(OutboxRow.contact_id.in_(chunk), OutboxRow.step_index >= NURTURE_STEP_BASE)
            .group_by(OutboxRow.contact_id)
        )
        for contact_id, count, waiting in session.execute(counts):
            nurtures[contact_id] = (int(count), bool(waiting))
    return {cid: Touch(at, *nurtures.get(cid, (0, False))) for cid, at in last.items()}


def ledger_records(session: Session, contact_ids: Sequence[int]) -> dict[int, list[StepRecord]]:
    """Each contact's sequence steps in the ledger (not rule replies or check-ins)."""
    found: dict[int, list[StepRecord]] = {}
    for chunk in in_chunks(contact_ids):
        query = select(
            OutboxRow.contact_id, OutboxRow.step_index, OutboxRow.state, OutboxRow.sent_at
        ).where(OutboxRow.contact_id.in_(chunk), OutboxRow.step_index < REPLY_STEP_BASE)
        for contact_id, index, state, sent_at in session.execute(query):
            found.setdefault(contact_id, []).append(StepRecord(index, state, sent_at))
    return found


def suppressed_keys(session: Session, keys: Sequence[str]) -> set[str]:
    """Which of these address keys are suppressed."""
    found: set[str] = set()
    for chunk in in_chunks(keys):
        found.update(
            session.scalars(
                select(SuppressionRow.email_key).where(SuppressionRow.email_key.in_(chunk))
            )
        )
    return found
