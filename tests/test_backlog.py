"""A backlog waiting for its window: passes don't read every due contact again each minute
while nothing changed, and send as soon as the window opens or something changes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from outreach.services.dispatch import QUIET_RECHECK
from tests.mailstack import SmtpServer
from tests.test_sending import T0, World

SATURDAY = T0 + timedelta(days=5)  # T0 is a Monday, 10:00 in New York
NEXT_MONDAY = T0 + timedelta(days=7)


@pytest.fixture
def weekdays_world(outbound_config: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("OUTREACH_SENDING__DAYS", '["mon","tue","wed","thu","fri"]')
    monkeypatch.setenv("OUTREACH_SENDING__START_TIME", "09:00")
    monkeypatch.setenv("OUTREACH_SENDING__END_TIME", "17:00")
    world = World(outbound_config, now=SATURDAY)
    yield world
    world.store.close()


def count_scans(world: World) -> list[datetime]:
    scans: list[datetime] = []
    scan = world.dispatcher.due.scan

    def counted(session: Any, now: datetime) -> Any:
        scans.append(now)
        return scan(session, now)

    world.dispatcher.due.scan = counted  # type: ignore[method-assign]
    return scans


def test_a_weekend_backlog_is_read_once_then_sent_when_the_window_opens(
    weekdays_world: World, smtp_sink: SmtpServer
) -> None:
    world = weekdays_world
    scans = count_scans(world)
    for minute in range(10):
        assert world.run(SATURDAY + timedelta(minutes=minute)).sent == []
    assert len(scans) == 1  # nothing changed and no slot can open before Monday
    assert world.run(SATURDAY + QUIET_RECHECK).sent == []
    assert len(scans) == 2  # read again after a while all the same
    assert len(world.run(NEXT_MONDAY).sent) == 2  # the window opened: no wait
    assert len(smtp_sink.received) == 2


def test_a_change_in_the_store_ends_the_wait(weekdays_world: World) -> None:
    from outreach.services.contacts import import_contacts

    world = weekdays_world
    scans = count_scans(world)
    world.run(SATURDAY)
    world.run(SATURDAY + timedelta(minutes=1))
    assert len(scans) == 1
    import_contacts(
        world.store,
        world.settings.the_pipeline,
        list(world.settings.segments),
        b"email,first_name,last_name,segment\nnew@x.example.com,Nia,Obi,psychiatrist\n",
        source="more.csv",
        now=SATURDAY + timedelta(minutes=2),
    )
    world.run(SATURDAY + timedelta(minutes=3))
    assert len(scans) == 2  # a new contact is due: read again


def test_a_time_zone_whose_window_opens_first_is_not_kept_waiting(
    outbound_config: Path, monkeypatch: pytest.MonkeyPatch, smtp_sink: SmtpServer
) -> None:
    """Sunday evening in New York is Monday morning in Auckland: its contact goes the minute
    its own window opens, though the others wait a day more."""
    from sqlalchemy import update

    from outreach.store.models import ContactRow

    monkeypatch.setenv("OUTREACH_SENDING__DAYS", '["mon","tue","wed","thu","fri"]')
    monkeypatch.setenv("OUTREACH_SENDING__START_TIME", "09:00")
    monkeypatch.setenv("OUTREACH_SENDING__END_TIME", "17:00")
    opens = SATURDAY + timedelta(days=1, hours=5)  # Sunday 20:00 UTC: 09:00 Monday, Auckland
    world = World(outbound_config, now=opens - timedelta(hours=1))
    try:
        with world.store.session() as session:
            session.execute(
                update(ContactRow)
                .where(ContactRow.email == "alma@nb.example.com")
                .values(timezone="Pacific/Auckland")
            )
        scans = count_scans(world)
        assert world.run(opens - timedelta(minutes=15)).sent == []
        assert world.run(opens - timedelta(minutes=5)).sent == []
        assert len(scans) == 1
        sent = world.run(opens + timedelta(minutes=1)).sent
        assert [line.email for line in sent] == ["alma@nb.example.com"]
    finally:
        world.store.close()
