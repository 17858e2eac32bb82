"""`outreach preview`: every step as readable text (or --raw bytes), before or after anything
was sent, and --send-to-me as a test to the practice on aiosmtpd, recording nothing."""

from __future__ import annotations

import email
import json
from collections.abc import Callable
from datetime import UTC, datetime
from email.policy import default
from pathlib import Path

import pytest
from sqlalchemy import update

from outreach.config import load_config
from outreach.store.database import open_store
from outreach.store.models import ContactRow
from tests.configs import edit_config
from tests.conftest import Run
from tests.mailstack import SmtpServer

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # Monday 10:00 in New York
MONDAY = "2026-03-02T10:00"
ALMA = "alma@nb.example.com"
CSV = (
    "email,first_name,last_name,title,organization,segment\n"
    f"{ALMA},Alma,Núñez,Dr.,North Bay,psychiatrist\n"
)


@pytest.fixture
def practice(outbound_config: Path, cli: Callable[..., Run]) -> Callable[..., Run]:
    """One psychiatrist imported on Monday; a rule thanks a source that refers."""
    from outreach.services.contacts import import_contacts

    edit_config(
        outbound_config,
        add={"rules": [{"on": "referral", "then": {"reply_with": "thank_you"}}]},
    )
    settings = load_config(outbound_config)
    store = open_store(settings.database_url)
    try:
        import_contacts(
            store,
            settings.the_pipeline,
            list(settings.segments),
            CSV.encode(),
            source="c.csv",
            now=T0,
        )
    finally:
        store.close()
    return cli


def parsed(text: str) -> email.message.EmailMessage:
    message = email.message_from_string(text, policy=default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def nothing_recorded(cli: Callable[..., Run]) -> None:
    assert json.loads(cli("outbox", "list", "--json").stdout) == []
    shown = json.loads(cli("contacts", "show", ALMA, "--json").stdout)
    assert shown["stage"] == "new"
    assert [c["reason"] for c in shown["stage_changes"]] == ["imported from c.csv line 2"]


class TestEveryStep:
    def test_follow_ups_before_the_intro_went_out_thread_as_they_would(
        self, practice: Callable[..., Run]
    ) -> None:
        intro = practice("preview", ALMA, "--step", "1", "--now", MONDAY)
        second = practice("preview", ALMA, "--step", "2", "--now", MONDAY)
        third = practice("preview", ALMA, "--step", "3", "--now", MONDAY)
        for run in (intro, second, third):
            assert run.exit_code == 0, run.output
        first, follow_up, last = parsed(intro.stdout), parsed(second.stdout), parsed(third.stdout)
        assert follow_up["Subject"] == "Re: " + first["Subject"]
        assert follow_up["In-Reply-To"].startswith("<") and follow_up["References"]
        references = last["References"].split()
        assert len(references) == 2 and last["In-Reply-To"] == references[-1]
        assert "In-Reply-To" not in first
        nothing_recorded(practice)

    def test_after_the_intro_was_sent_a_follow_up_answers_it(
        self, practice: Callable[..., Run], smtp_sink: SmtpServer
    ) -> None:
        assert practice("send-due", "--once", "--now", MONDAY).exit_code == 0
        sent = email.message_from_bytes(smtp_sink.received[0].data, policy=default)
        follow_up = parsed(practice("preview", ALMA, "--step", "2", "--now", MONDAY).stdout)
        assert follow_up["In-Reply-To"] == sent["Message-ID"]
        assert follow_up["Subject"] == "Re: " + sent["Subject"]

    def test_the_check_in_and_the_rule_reply_preview(self, practice: Callable[..., Run]) -> None:
        nurture = practice("preview", ALMA, "--step", "nurture", "--now", MONDAY)
        assert nurture.exit_code == 0, nurture.output
        assert "In-Reply-To" not in parsed(nurture.stdout)
        assert parsed(nurture.stdout)["Subject"]
        thanks = practice("preview", ALMA, "--step", "thank_you", "--now", MONDAY)
        assert thanks.exit_code == 0, thanks.output
        assert parsed(thanks.stdout)["Subject"]
        nothing_recorded(practice)

    def test_an_unknown_step_names_the_choices(self, practice: Callable[..., Run]) -> None:
        run = practice("preview", ALMA, "--step", "7")
        assert run.exit_code == 2
        assert "--step '7': give a sequence step from 1 to 3, or one of: nurture, thank_you" in (
            run.stderr
        )


class TestText:
    def test_text_by_default_and_the_exact_bytes_with_raw(
        self, practice: Callable[..., Run]
    ) -> None:
        text = practice("preview", ALMA, "--step", "1", "--now", MONDAY).stdout
        raw = practice("preview", ALMA, "--step", "1", "--now", MONDAY, "--raw").stdout
        assert "Núñez" in text and "Content-Transfer-Encoding" not in text
        assert "To: Alma Núñez <alma@nb.example.com>" in text
        assert "Content-Transfer-Encoding: quoted-printable" in raw
        assert "=?utf-8?" in raw and "Núñez" not in raw  # encoded words, =C3=BA in the body
        head, _, body = text.partition("\n\n")
        assert "=\n" not in body and "=C3" not in body
        assert head.startswith("From: ")


class TestSendToMe:
    def test_the_test_goes_to_the_practice_and_records_nothing(
        self, practice: Callable[..., Run], smtp_sink: SmtpServer
    ) -> None:
        shown = parsed(practice("preview", ALMA, "--step", "2", "--now", MONDAY).stdout)
        run = practice("preview", ALMA, "--step", "2", "--send-to-me", "--now", MONDAY)
        assert run.exit_code == 0, run.output
        assert "sent to maya@calmharbor.example.com: [TEST] Re: " in run.stdout
        [envelope] = smtp_sink.received
        assert envelope.rcpt_tos == ["maya@calmharbor.example.com"]
        got = email.message_from_bytes(envelope.data, policy=default)
        assert got["Subject"] == "[TEST] " + shown["Subject"]
        assert got["To"] == "maya@calmharbor.example.com"
        body = got.get_body(preferencelist=("plain",))
        assert body is not None and "Dear" in body.get_content()
        nothing_recorded(practice)

    def test_a_refused_test_says_so(
        self, practice: Callable[..., Run], smtp_sink: SmtpServer
    ) -> None:
        smtp_sink.handler.rcpt_replies += ["550 5.1.1 no such user"]
        run = practice("preview", ALMA, "--send-to-me", "--now", MONDAY)
        assert run.exit_code == 2
        assert "the test message to maya@calmharbor.example.com was not sent" in run.stderr
        nothing_recorded(practice)


class TestHeldContacts:
    def test_a_rule_reply_is_not_queued_for_a_held_contact(
        self, practice: Callable[..., Run], outbound_config: Path
    ) -> None:
        """A held contact's automatic thank-you would go out unreviewed, or weeks late at
        approval: nothing is queued, and outreach says so."""
        settings = load_config(outbound_config)
        store = open_store(settings.database_url)
        try:
            with store.session() as session:
                session.execute(update(ContactRow).values(held_since=T0))
        finally:
            store.close()
        cli = practice
        added = cli("referrals", "add", ALMA, "--date", "2026-03-03")
        assert added.exit_code == 0, added.output
        assert "reply thank_you not queued (held for review)" in added.output
        assert json.loads(cli("outbox", "list", "--json").stdout) == []
