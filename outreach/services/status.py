"""What ``outreach status`` shows, and the facts the daemon leaves for it in ``app_state``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from outreach.config import Settings
from outreach.domain.states import InboundKind, OutboxState
from outreach.mail.connections import sign_in
from outreach.services import forecast
from outreach.services.due import DueSteps
from outreach.store.database import Store
from outreach.store.instance import daemon_running
from outreach.store.ledger import paused_domains, sending_paused, sending_paused_until
from outreach.store.models import ContactRow, InboundEventRow, OutboxRow, StateRow

DAEMON_PID = "daemon.pid"
DAEMON_STARTED = "daemon.started_at"
LAST_DISPATCH = "dispatch.last_pass"  # value: a one-line summary of the pass
LAST_SYNC = "inbox.last_sync"  # value: the folders read
DIGEST_SENT_ON = "digest.sent_on"  # value: the practice-local date of the last digest
RECENT = timedelta(days=7)  # how far back status counts unprocessable messages
OUTBOX_PROBLEM_STATES = (
    OutboxState.UNKNOWN,
    OutboxState.FAILED,
    OutboxState.RETRY,
    OutboxState.SENDING,
)


def record_facts(store: Store, now: datetime, facts: Mapping[str, str]) -> None:
    """Save facts for ``outreach status`` (each with ``now`` as its time)."""
    with store.session() as session:
        for key, value in facts.items():
            row = session.get(StateRow, key)
            if row is None:
                session.add(StateRow(key=key, value=value, updated_at=now))
            else:
                row.value, row.updated_at = value, now
        session.commit()


def read_fact(store: Store, key: str) -> tuple[str, datetime] | None:
    with store.session() as session:
        row = session.get(StateRow, key)
        return (row.value, row.updated_at) if row else None


@dataclass
class Status:
    """The daemon and the pipeline at a glance."""

    running: bool
    pid: int | None
    since: datetime | None
    last_dispatch: datetime | None
    last_dispatch_summary: str
    last_sync: datetime | None
    last_reply: datetime | None
    due_today: int
    sending_paused: str | None
    outbox_problems: dict[str, int]
    # When nothing goes out today: when the next send would (within two weeks), or None.
    next_send: datetime | None = None
    sending_paused_until: datetime | None = None  # the pause lifts itself then
    held_contacts: int = 0  # imported contacts waiting for `outreach approve`
    needs_data: int = 0  # contacts whose templates need a field they lack: they wait
    pipeline: dict[str, dict[str, int]] = field(default_factory=dict)  # segment -> stage -> n
    unprocessable: int = 0  # inbound messages recorded as unprocessable in the last week
    held_for_review: int = 0  # low-confidence readings waiting for `inbox decide`
    paused_domains: dict[str, str] = field(default_factory=dict)  # domain -> why
    # OAuth2 mailboxes: "signed in", or what a person must do ("sign-in expired: run ...").
    sign_in: str | None = None
    sign_in_needed: bool = False

    def to_json(self) -> dict[str, Any]:
        def when(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "running": self.running,
            "pid": self.pid,
            "since": when(self.since),
            "last_dispatch": when(self.last_dispatch),
            "last_dispatch_summary": self.last_dispatch_summary,
            "last_inbox_sync": when(self.last_sync),
            "last_reply": when(self.last_reply),
            "due_today": self.due_today,
            "next_send": when(self.next_send),
            "sending_paused": self.sending_paused,
            "sending_paused_until": when(self.sending_paused_until),
            "held_contacts": self.held_contacts,
            "needs_data": self.needs_data,
            "outbox_problems": self.outbox_problems,
            "pipeline": self.pipeline,
            "unprocessable_messages": self.unprocessable,
            "held_for_review": self.held_for_review,
            "paused_domains": self.paused_domains,
            "sign_in": self.sign_in,
        }


def gather_status(store: Store, settings: Settings, now: datetime) -> Status:
    """Read the daemon's facts and the pipeline (nothing is written)."""
    running = daemon_running(settings.database_url)
    with store.session() as session:
        facts = {row.key: row for row in session.scalars(select(StateRow))}
        pipeline: dict[str, dict[str, int]] = {}
        query = select(ContactRow.segment, ContactRow.stage, func.count()).group_by(
            ContactRow.segment, ContactRow.stage
        )
        for segment, stage, count in session.execute(query):
            pipeline.setdefault(segment, {})[stage] = count
        unprocessable = session.scalar(
            select(func.count())
            .select_from(InboundEventRow)
            .where(
                InboundEventRow.kind == InboundKind.UNPROCESSABLE,
                InboundEventRow.received_at >= now - RECENT,
            )
        )
        held = session.scalar(
            select(func.count())
            .select_from(InboundEventRow)
            .where(InboundEventRow.review == "pending")
        )
        domains = paused_domains(session)
        paused = sending_paused(session, now)
        paused_until = sending_paused_until(session) if paused else None
        held_contacts = session.scalar(
            select(func.count()).select_from(ContactRow).where(ContactRow.held_since.is_not(None))
        )
        lacking = session.scalar(
            select(func.count()).select_from(ContactRow).where(ContactRow.needs_data.is_not(None))
        )
        problems = dict(
            session.execute(
                select(OutboxRow.state, func.count())
                .where(OutboxRow.state.in_(OUTBOX_PROBLEM_STATES))
                .group_by(OutboxRow.state)
            ).all()
        )
    pid = facts.get(DAEMON_PID)
    started = facts.get(DAEMON_STARTED)
    dispatch = facts.get(LAST_DISPATCH)
    sync = facts.get(LAST_SYNC)
    due = DueSteps(store, settings)
    today = forecast.due_today(due, now)
    tokens = sign_in(settings)
    signed_in = tokens.status() if tokens is not None else None
    return Status(
        running=running,
        pid=int(pid.value) if running and pid and pid.value.isdigit() else None,
        since=datetime.fromisoformat(started.value) if running and started else None,
        last_dispatch=dispatch.updated_at if dispatch else None,
        last_dispatch_summary=dispatch.value if dispatch else "",
        last_sync=sync.updated_at if sync else None,
        last_reply=last_reply(store),
        due_today=today,
        next_send=None if today else forecast.next_send(due, now),
        sending_paused=paused,
        sending_paused_until=paused_until,
        held_contacts=int(held_contacts or 0),
        needs_data=int(lacking or 0),
        outbox_problems={str(k): int(v) for k, v in problems.items()},
        pipeline=pipeline,
        unprocessable=int(unprocessable or 0),
        held_for_review=int(held or 0),
        paused_domains=domains,
        sign_in=signed_in.summary if signed_in else None,
        sign_in_needed=signed_in.needed if signed_in else False,
    )


def last_reply(store: Store) -> datetime | None:
    """When the latest reply from a source was read."""
    with store.session() as session:
        return session.scalar(
            select(func.max(InboundEventRow.received_at)).where(InboundEventRow.kind == "reply")
        )


def due_today(due: DueSteps, now: datetime) -> int:
    """What the dispatcher will send between ``now`` and the end of the practice's day:
    ``plan``'s forecast (window, business days, caps, held contacts, pauses), counted."""
    return forecast.due_today(due, now)
