"""A pause of all sending that starts while a pass is sending stops the rest of the pass: the
statement that marks each message `sending` checks it (found in review of issue 14)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from outreach.store.database import Store
from outreach.store.ledger import START, lift_ended_pause, pause_sending, resume_sending
from outreach.store.models import ContactRow, OutboxRow
from tests.test_contacts_store import CSV, do_import

T = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)


def _queued(store: Store) -> int:
    do_import(store, CSV)
    with store.session() as session:
        contact = session.scalars(select(ContactRow).order_by(ContactRow.id)).first()
        assert contact is not None
        row = OutboxRow(
            contact_id=contact.id,
            step_index=0,
            template="intro",
            message_id="<q1@practice.example.com>",
            subject="Hello",
            state="queued",
            created_at=T,
            updated_at=T,
        )
        session.add(row)
        session.flush()
        return row.id


def _start(store: Store, outbox_id: int, now: datetime) -> int:
    with store.session() as session:
        return session.connection().execute(START, {"oid": outbox_id, "now": now}).rowcount


def test_a_pause_during_a_pass_stops_the_next_message(store: Store) -> None:
    outbox_id = _queued(store)
    with store.session() as session:
        pause_sending(session, "paused by hand", T, keep_first=False)
    assert _start(store, outbox_id, T) == 0  # not handed over: it stays queued
    with store.session() as session:
        resume_sending(session)
    assert _start(store, outbox_id, T) == 1


def test_a_pause_whose_end_came_is_lifted_for_the_pass(store: Store) -> None:
    outbox_id = _queued(store)
    with store.session() as session:
        until = T + timedelta(hours=1)
        pause_sending(session, "paused by hand", T, keep_first=False, until=until)
    with store.session() as session:
        assert not lift_ended_pause(session, T)  # not yet
    assert _start(store, outbox_id, T) == 0
    with store.session() as session:
        assert lift_ended_pause(session, T + timedelta(hours=2))
    assert _start(store, outbox_id, T + timedelta(hours=2)) == 1
