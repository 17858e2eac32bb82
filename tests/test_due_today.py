"""`status`'s "due today" is what `plan` would send today: the window, business days, caps,
held contacts and pauses all count."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import Run
from tests.mailstack import SmtpServer
from tests.test_review import import_csv

NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture
def weekdays(
    outbound_config: Path, cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Run]:
    """Mon-Fri 09:00-16:30, at most two sends a day; three contacts imported on a Monday."""
    for key, value in {
        "SENDING__DAYS": '["mon","tue","wed","thu","fri"]',
        "SENDING__START_TIME": "09:00",
        "SENDING__END_TIME": "16:30",
        "SENDING__MAX_PER_DAY": "2",
    }.items():
        monkeypatch.setenv(f"OUTREACH_{key}", value)
    import_csv(outbound_config, hold=False)
    return cli


def due_today(cli: Callable[..., Run], now: str) -> tuple[int, str | None]:
    found = json.loads(cli("status", "--json", "--now", now).stdout)
    return found["due_today"], found["next_send"]


def planned_on_the_day(cli: Callable[..., Run], now: str) -> int:
    day = datetime.fromisoformat(now).date()
    planned = json.loads(cli("plan", "--days", "1", "--now", now, "--json").stdout)
    return sum(
        1 for p in planned if datetime.fromisoformat(p["at"]).astimezone(NEW_YORK).date() == day
    )


class TestDueToday:
    def test_a_saturday_has_nothing_due_and_names_monday(
        self, weekdays: Callable[..., Run]
    ) -> None:
        saturday = "2026-03-07T10:00"
        count, next_send = due_today(weekdays, saturday)
        assert count == 0 == planned_on_the_day(weekdays, saturday)
        assert next_send == "2026-03-09T13:00:00+00:00"  # Monday 09:00 EDT
        shown = weekdays("status", "--now", saturday).stdout
        assert "due today:     0 (next send Mon 2026-03-09 09:00 EDT)" in shown

    def test_a_weekday_counts_what_the_caps_let_through(self, weekdays: Callable[..., Run]) -> None:
        monday = "2026-03-09T10:00"
        count, next_send = due_today(weekdays, monday)
        assert count == 2 == planned_on_the_day(weekdays, monday)  # max_per_day = 2
        assert next_send is None

    def test_after_the_window_closes_nothing_more_today(self, weekdays: Callable[..., Run]) -> None:
        evening = "2026-03-09T17:00"
        assert due_today(weekdays, evening)[0] == 0 == planned_on_the_day(weekdays, evening)

    def test_send_due_sends_what_status_said(
        self, weekdays: Callable[..., Run], smtp_sink: SmtpServer
    ) -> None:
        monday = "2026-03-09T10:00"
        count, _ = due_today(weekdays, monday)
        assert weekdays("send-due", "--once", "--now", monday).exit_code == 0
        assert len(smtp_sink.received) == count
        assert due_today(weekdays, "2026-03-09T10:05")[0] == 0  # the day's cap is used
