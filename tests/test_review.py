"""Review before sending: contacts held at import until `outreach approve`, and pausing all
sending by hand (until resumed, or until a date), on aiosmtpd."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from outreach.config import load_config
from outreach.store.database import open_store
from outreach.store.ledger import pause_sending, sending_paused, sending_paused_until
from tests.conftest import Run
from tests.mailstack import SmtpServer

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

CSV = (
    "email,first_name,last_name,title,organization,segment\n"
    "alma@nb.example.com,Alma,Reyes,Dr.,North Bay,psychiatrist\n"
    "jonah@nb2.example.com,Jonah,Whitfield,Dr.,North Bay Two,psychiatrist\n"
    "tom@lm.example.org,Tom,Beaulieu,Mr.,Lincoln Middle,teacher\n"
)
MONDAY = "2026-03-02T10:00"  # New York, the practice's zone
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # the same moment


def import_csv(config: Path, *, hold: bool) -> None:
    """Import CSV at T0 (the service, so the import time is fixed), held or not."""
    from outreach.services.contacts import import_contacts

    settings = load_config(config)
    store = open_store(settings.database_url)
    try:
        import_contacts(
            store,
            settings.the_pipeline,
            list(settings.segments),
            CSV.encode(),
            source="c.csv",
            now=T0,
            hold=hold,
        )
    finally:
        store.close()


@pytest.fixture
def held(
    outbound_config: Path, cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Run]:
    """A practice with [sending] hold_new on (as `init` writes it), three contacts imported."""
    monkeypatch.setenv("OUTREACH_SENDING__HOLD_NEW", "true")
    import_csv(outbound_config, hold=load_config(outbound_config).sending.hold_new)
    return cli


@pytest.fixture
def imported(outbound_config: Path, cli: Callable[..., Run]) -> Callable[..., Run]:
    """A practice that sends without review, three contacts imported."""
    import_csv(outbound_config, hold=False)
    return cli


def sent_to(server: SmtpServer) -> list[str]:
    return sorted(r for envelope in server.received for r in envelope.rcpt_tos)


class TestHeldUntilApproved:
    def test_nothing_is_sent_until_approved(
        self, held: Callable[..., Run], smtp_sink: SmtpServer
    ) -> None:
        """Held contacts are not due: send-due, plan and status agree that nothing goes."""
        run = held("send-due", "--once", "--now", MONDAY)
        assert run.exit_code == 0, run.output
        assert "nothing due" in run.stdout
        assert smtp_sink.received == []
        assert json.loads(held("plan", "--now", MONDAY, "--json").stdout) == []
        status = json.loads(held("status", "--json", "--now", MONDAY).stdout)
        assert (status["due_today"], status["held_contacts"]) == (0, 3)
        assert "3 imported contacts wait for your review" in held("status", "--now", MONDAY).stdout
        assert json.loads(held("outbox", "list", "--json").stdout) == []

    def test_approve_a_segment_then_one_address(
        self, held: Callable[..., Run], smtp_sink: SmtpServer
    ) -> None:
        """Approving a segment lets its contacts go at the next pass; the others still wait."""
        approved = held("approve", "--segment", "psychiatrist", "--now", MONDAY)
        assert approved.exit_code == 0, approved.output
        assert "2 contacts approved" in approved.stdout
        assert held("send-due", "--once", "--now", MONDAY).exit_code == 0
        assert sent_to(smtp_sink) == ["alma@nb.example.com", "jonah@nb2.example.com"]

        assert held("approve", "tom@lm.example.org", "--now", MONDAY).exit_code == 0
        later = "2026-03-02T10:05"
        assert held("send-due", "--once", "--now", later).exit_code == 0
        assert sent_to(smtp_sink)[-1] == "tom@lm.example.org"
        assert len(smtp_sink.received) == 3
        history = json.loads(held("contacts", "show", "tom@lm.example.org", "--json").stdout)
        assert "approved for sending by" in json.dumps(history)

    def test_a_segment_is_named_by_its_label_too(self, held: Callable[..., Run]) -> None:
        run = held("approve", "--segment", "School counselors and teachers", "--now", MONDAY)
        assert run.exit_code == 0, run.output
        assert "approved tom@lm.example.org" in run.stdout

    def test_dry_run_lists_and_changes_nothing(
        self, held: Callable[..., Run], smtp_sink: SmtpServer
    ) -> None:
        run = held("approve", "--all", "--dry-run", "--now", MONDAY)
        assert run.exit_code == 0, run.output
        assert run.stdout.count("would approve ") == 3
        assert "3 contacts would be approved (nothing changed)" in run.stdout
        held("send-due", "--once", "--now", MONDAY)
        assert smtp_sink.received == []

    def test_an_unknown_address_approves_nobody(
        self, held: Callable[..., Run], smtp_sink: SmtpServer
    ) -> None:
        run = held("approve", "alma@nb.example.com", "nobody@x.example.com", "--now", MONDAY)
        assert run.exit_code == 1
        assert "nobody@x.example.com" in run.stderr
        held("send-due", "--once", "--now", MONDAY)
        assert smtp_sink.received == []

    def test_approving_someone_not_held_says_so(self, held: Callable[..., Run]) -> None:
        held("approve", "alma@nb.example.com", "--now", MONDAY)
        again = held("approve", "alma@nb.example.com", "--now", MONDAY)
        assert again.exit_code == 0
        assert "alma@nb.example.com: not held for review" in again.stderr
        assert "0 contacts approved" in again.stdout

    def test_approve_needs_someone_to_approve(self, held: Callable[..., Run]) -> None:
        run = held("approve")
        assert run.exit_code == 2
        assert "--segment SEGMENT, EMAIL..., or --all" in run.stderr

    def test_the_first_step_counts_from_the_approval(
        self, held: Callable[..., Run], smtp_sink: SmtpServer
    ) -> None:
        """Approved a week after the import: enrolled at the approval, sent in its window."""
        week_later = "2026-03-09T10:00"
        assert held("approve", "--all", "--now", week_later).exit_code == 0
        shown = json.loads(held("contacts", "show", "alma@nb.example.com", "--json").stdout)
        assert shown["created_at"] == "2026-03-09T14:00:00+00:00"  # EDT since 8 March
        planned = json.loads(held("plan", "--now", week_later, "--json").stdout)
        intros = [p for p in planned if p["step"] == 1]
        assert len(intros) == 3
        assert {p["at"][:10] for p in intros} == {"2026-03-09"}


class TestPauseByHand:
    def test_pause_then_resume(self, imported: Callable[..., Run], smtp_sink: SmtpServer) -> None:
        cli = imported
        paused = cli("sending", "pause", "--now", MONDAY)
        assert paused.exit_code == 0, paused.output
        assert "paused by hand" in paused.stdout
        run = cli("send-due", "--once", "--now", MONDAY)
        assert run.exit_code == 1 and "sending is paused: paused by hand" in run.stderr
        assert smtp_sink.received == []
        status = cli("status", "--now", MONDAY)
        assert "SENDING PAUSED: paused by hand" in status.stdout
        assert json.loads(cli("status", "--json", "--now", MONDAY).stdout)["due_today"] == 0
        assert "sending is paused" in cli("plan", "--now", MONDAY).stderr
        resumed = cli("sending", "resume")
        assert "sending resumed (was paused: paused by hand)" in resumed.stdout
        assert cli("send-due", "--once", "--now", MONDAY).exit_code == 0
        assert len(smtp_sink.received) == 3

    def test_pause_until_a_date_lifts_itself(self, imported: Callable[..., Run]) -> None:
        """Paused on Monday until Wednesday: plan and status see it lift at Wednesday 00:00."""
        cli = imported
        paused = cli("sending", "pause", "--until", "2026-03-04", "--now", MONDAY)
        assert paused.exit_code == 0, paused.output
        assert "paused by hand until Wed 2026-03-04 00:00 EST" in paused.stdout
        tuesday = json.loads(cli("status", "--json", "--now", "2026-03-03T10:00").stdout)
        assert tuesday["sending_paused"].startswith("paused by hand until")
        assert tuesday["sending_paused_until"] == "2026-03-04T05:00:00+00:00"
        assert tuesday["due_today"] == 0
        assert tuesday["next_send"] == "2026-03-04T05:00:00+00:00"
        assert "it lifts itself then" in cli("status", "--now", "2026-03-03T10:00").stdout
        planned = json.loads(cli("plan", "--now", MONDAY, "--json").stdout)
        assert len(planned) > 0
        assert min(p["at"] for p in planned) == "2026-03-04T05:00:00+00:00"
        wednesday = json.loads(cli("status", "--json", "--now", "2026-03-04T10:00").stdout)
        assert wednesday["sending_paused"] is None
        assert wednesday["due_today"] == 3

    def test_send_due_sends_once_the_pause_has_lifted(
        self, imported: Callable[..., Run], smtp_sink: SmtpServer
    ) -> None:
        cli = imported
        far = (datetime.now(UTC) + timedelta(days=400)).date().isoformat()
        assert cli("sending", "pause", "--until", far).exit_code == 0
        assert cli("send-due", "--once").exit_code == 1
        after = f"{far}T10:00"
        assert cli("send-due", "--once", "--now", after).exit_code == 0
        assert len(smtp_sink.received) == 3

    def test_an_end_in_the_past_is_refused(
        self, outbound_config: Path, cli: Callable[..., Run]
    ) -> None:
        run = cli("sending", "pause", "--until", "2026-03-01", "--now", MONDAY)
        assert run.exit_code == 2
        assert "--until 2026-03-01 00:00 has already passed" in run.stderr
        assert cli("status", "--json", "--now", MONDAY).stdout.count('"sending_paused": null')

    def test_an_end_that_is_not_a_date_is_named(
        self, outbound_config: Path, cli: Callable[..., Run]
    ) -> None:
        run = cli("sending", "pause", "--until", "next week")
        assert run.exit_code == 2
        assert "--until: 'next week' is not an ISO 8601 time" in run.stderr


class TestPauseRows:
    """The pause of all sending in the store: an end never shortens an open-ended pause."""

    T = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)

    def test_a_policy_pause_replaces_a_pause_with_an_end(self, outbound_config: Path) -> None:
        store = open_store(load_config(outbound_config).database_url)
        try:
            with store.session() as session:
                pause_sending(session, "by hand", self.T, keep_first=False, until=self.T + _DAY)
                pause_sending(session, "5.7.1 refused", self.T, keep_first=True)
            with store.session() as session:
                assert sending_paused_until(session) is None
                assert sending_paused(session, self.T + 9 * _DAY) == "5.7.1 refused"
        finally:
            store.close()

    def test_a_pause_with_an_end_leaves_an_open_ended_one(self, outbound_config: Path) -> None:
        store = open_store(load_config(outbound_config).database_url)
        try:
            with store.session() as session:
                pause_sending(session, "5.7.1 refused", self.T, keep_first=False)
                pause_sending(session, "by hand", self.T, keep_first=False, until=self.T + _DAY)
            with store.session() as session:
                assert sending_paused(session, self.T + 9 * _DAY) == "5.7.1 refused"
        finally:
            store.close()

    def test_a_lifted_pause_is_replaced_by_a_new_one(self, outbound_config: Path) -> None:
        store = open_store(load_config(outbound_config).database_url)
        try:
            with store.session() as session:
                pause_sending(session, "first", self.T, keep_first=False, until=self.T + _DAY)
            later = self.T + 2 * _DAY
            with store.session() as session:
                assert sending_paused(session, later) is None
                pause_sending(session, "second", later, keep_first=True)
            with store.session() as session:
                assert sending_paused(session, later + 9 * _DAY) == "second"
        finally:
            store.close()


_DAY = timedelta(days=1)
