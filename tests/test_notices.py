"""The therapist's notices and daily digest read as sentences: who, which of our emails a
message answers, what outreach did and what to run next; never a Message-ID, never the words
of the message."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from email.policy import default
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from outreach.config import load_config
from outreach.domain.sequencing import step_name
from outreach.mail.notices import (
    Answered,
    Source,
    headline,
    plural,
    readable_effect,
    source_notice,
)
from outreach.report.build import Attention
from outreach.runtime.parts import build_parts
from outreach.services.digest import (
    DigestFacts,
    Heard,
    Moved,
    Outgoing,
    compose_digest,
    gather_digest,
)
from outreach.services.outbox import list_outbox
from tests.mailstack import Dovecot, SmtpServer
from tests.test_inbound import T0, Practice, reply
from tests.test_inbound_v2 import SPAMHAUS, dsn, report

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
ZONE = ZoneInfo("America/New_York")
TOM, ALMA = "tom@lm.example.org", "alma@nb.example.com"
# A Message-ID or message key: what no notice or digest line may show.
MESSAGE_ID = re.compile(r"<[^<>\s]+>")
REYES = Source.of(
    ALMA,
    first_name="Alma",
    last_name="Reyes",
    title="Dr.",
    organization="North Bay Psychiatry",
    segment="Psychiatrists",
)


def body_of(message: Message) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode().replace("\r\n", "\n")


class TestWords:
    def test_plurals(self) -> None:
        assert [plural(n, "reply") for n in (0, 1, 2)] == ["0 replies", "1 reply", "2 replies"]
        assert plural(1, "day") == "1 day" and plural(3, "day") == "3 days"
        assert plural(2, "opt-out") == "2 opt-outs"

    def test_steps_are_named_as_people_say_them(self) -> None:
        assert [step_name(i) for i in range(3)] == ["Intro", "Follow-up 1", "Follow-up 2"]
        assert step_name(1000, "thank_you") == "Thank-you"
        assert step_name(1001, "meeting_invite") == "Reply (meeting invite)"
        assert step_name(2000) == "Check-in 1" and step_name(2002) == "Check-in 3"

    def test_a_recorded_effect_reads_without_message_ids(self) -> None:
        effect = (
            "replied; 0 queued step(s) cancelled; rule 0, 1 on reply <r1@nb.example.com>: "
            "stage engaged, tags warm, notice queued"
        )
        assert readable_effect(effect) == (
            "replied; rules 0, 1 (reply): moved to engaged, tags warm, notice queued"
        )
        assert readable_effect("replied; 1 queued step(s) cancelled") == (
            "replied; 1 queued email cancelled"
        )

    def test_the_subject_names_the_kind_the_source_and_the_segment(self) -> None:
        assert headline("reply", REYES) == "Reply from Dr. Reyes (Psychiatrists)"
        assert headline("bounce", REYES) == "Bounced: Dr. Reyes (Psychiatrists)"
        nameless = Source.of(
            "x@y.org", first_name=None, last_name=None, title=None, organization=None, segment=""
        )
        assert headline("unsubscribe", nameless) == "Unsubscribed: x@y.org"


def test_a_notice_says_who_which_email_what_was_done_and_what_to_run(
    config_file: Path,
) -> None:
    settings = load_config(config_file)
    sent = datetime(2026, 3, 2, 9, 5, tzinfo=ZONE)
    message = source_notice(
        settings,
        kind="reply",
        source=REYES,
        happened=["Dr. Reyes replied to our email."],
        answered=Answered("follow-up 1", "Re: Working together for your patients", sent),
        done=["moved them from contacted to replied"],
        commands=["outreach contacts show alma@nb.example.com"],
        refers_to="<ours@calmharbor.example.com>",
        stage="replied",
    )
    parsed = message_from_bytes(message.data, policy=default)
    assert parsed["Subject"] == "Reply from Dr. Reyes (Psychiatrists)"
    assert parsed["References"] == "<ours@calmharbor.example.com>"  # a header, for threading
    text = body_of(parsed)
    assert text.splitlines()[:4] == [
        "Dr. Reyes replied to our email.",
        "",
        "Who: Dr. Alma Reyes, North Bay Psychiatry <alma@nb.example.com> (Psychiatrists)",
        "Stage now: replied",
    ]
    assert (
        'It answers our follow-up 1, "Re: Working together for your patients", '
        "sent Mon 2 Mar 2026, 09:05." in text
    )
    assert "  - moved them from contacted to replied" in text
    assert "To do more:\n  outreach contacts show alma@nb.example.com" in text
    assert MESSAGE_ID.findall(text.replace("<alma@nb.example.com>", "")) == []


class TestOnRealServers:
    """Notices as the inbound processor sends them, through aiosmtpd, after Dovecot."""

    @pytest.fixture
    def practice(
        self, outbound_config: Path, dovecot: Dovecot, smtp_sink: SmtpServer
    ) -> Iterator[Practice]:
        p = Practice(outbound_config, dovecot)
        yield p
        p.store.close()

    def notices(self, smtp_sink: SmtpServer, before: int) -> list[Message]:
        return [message_from_bytes(e.data, policy=default) for e in smtp_sink.received[before:]]

    def test_a_complaint_notice_names_our_email_and_shows_no_message_id(
        self, practice: Practice, smtp_sink: SmtpServer
    ) -> None:
        before = len(smtp_sink.received)
        practice.deliver(
            report(
                "feedback-report",
                "--B\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\n"
                f"User-Agent: ExampleFBL/1.0\nVersion: 1\nOriginal-Rcpt-To: {TOM}\n\n"
                f"--B\nContent-Type: message/rfc822\n\nMessage-ID: {practice.ids[TOM]}\n"
                f"To: {TOM}\nSubject: Hello\n\nHello\n",
                n=6,
                sender="fbl@feedback.example.net",
            )
        )
        practice.sync()
        (notice,) = self.notices(smtp_sink, before)
        assert notice["Subject"] == "Complaint: Tom Beaulieu (School counselors and teachers)"
        text = body_of(notice)
        intro = next(e for e in list_outbox(practice.store) if e.email == TOM)
        assert f'It answers our intro, "{intro.subject}", sent ' in text
        assert "Who: Tom Beaulieu, Lincoln Middle <tom@lm.example.org>" in text
        assert "suppressed their address" in text
        assert "outreach contacts show tom@lm.example.org" in text
        assert MESSAGE_ID.findall(text.replace(f"<{TOM}>", "")) == []

    def test_a_guess_asks_for_a_decision_by_command_not_by_message_id(
        self, practice: Practice, smtp_sink: SmtpServer
    ) -> None:
        before = len(smtp_sink.received)
        letter = " ".join(["We discussed your offer at our staff meeting at some length."] * 12)
        practice.deliver(
            reply(TOM, practice.ids[TOM], f"{letter}\n\nPlease remove me from your list.")
        )
        practice.sync()
        (notice,) = self.notices(smtp_sink, before)
        assert notice["Subject"] == (
            "Please decide: a message about Tom Beaulieu (School counselors and teachers)"
        )
        text = body_of(notice)
        assert "looks like an unsubscribe, but outreach is not sure" in text
        assert "  outreach inbox review\n  outreach inbox decide KEY --as KIND" in text
        assert "staff meeting" not in text  # never the sender's words
        assert MESSAGE_ID.findall(text.replace(f"<{TOM}>", "")) == []

    def test_a_policy_bounce_says_what_paused_and_how_to_resume(
        self, practice: Practice, smtp_sink: SmtpServer
    ) -> None:
        before = len(smtp_sink.received)
        practice.deliver(
            dsn(TOM, practice.ids[TOM], action="failed", status="5.7.1", diagnostic=SPAMHAUS, n=4)
        )
        practice.sync()
        (notice,) = self.notices(smtp_sink, before)
        assert notice["Subject"].startswith("Sending paused: Tom Beaulieu's mail server")
        text = body_of(notice)
        assert "  - paused sending to lm.example.org; their stage is unchanged" in text
        assert "  outreach sending resume --domain lm.example.org" in text
        assert MESSAGE_ID.findall(text.replace(f"<{TOM}>", "")) == []

    def test_the_digest_after_a_reply_reads_as_sentences(self, practice: Practice) -> None:
        practice.deliver(reply(f"Alma Reyes <{ALMA}>", practice.ids[ALMA], "Yes, let's talk."))
        practice.sync(T0 + timedelta(hours=2))
        dispatcher = build_parts(practice.settings, practice.store).dispatcher
        zone = ZoneInfo(practice.settings.practice.timezone)
        subject, lines = compose_digest(gather_digest(dispatcher, T0 + timedelta(days=1)), zone)
        assert subject.startswith("outreach digest for Tue 3 Mar: 1 reply yesterday, ")
        text = "\n".join(lines)
        assert "  Reply from Alma Reyes (Psychiatrists): replied" in text
        assert "  Alma Reyes (Psychiatrists): contacted -> replied (reply)" in text
        assert "  Alma Reyes (Psychiatrists): new -> contacted (Intro sent)" in text
        assert (
            "  Tom Beaulieu (School counselors and teachers): added as new "
            "(imported from t.csv line 3)" in text
        )
        assert "let's talk" not in text
        assert MESSAGE_ID.findall(text) == []


class TestDigestText:
    def test_the_digest_says_who_and_what_never_their_words(self) -> None:
        tom = Source.of(
            "t@school.org",
            first_name="Tom",
            last_name="Beaulieu",
            title=None,
            organization=None,
            segment="School counselors and teachers",
        )
        facts = DigestFacts(
            day=date(2026, 12, 2),
            inbound=[
                Heard("reply", REYES, "psych.example.com", "replied; 0 queued step(s) cancelled"),
                Heard("auto_reply", None, "example.org", "no effect: no contact matches"),
                Heard("unprocessable", None, "", "unprocessable (RuntimeError): recorded"),
            ],
            changes=[Moved(REYES, "contacted", "replied", "reply <m@x> of 2026-12-01 10:00")],
            today=[Outgoing(datetime(2026, 12, 2, 14, 5, tzinfo=UTC), "Intro", tom)],
            attention=[
                Attention("unknown send", "x@y.org", "check it", "outreach outbox resolve 3 --sent")
            ],
        )
        subject, lines = compose_digest(facts, ZONE)
        assert subject == (
            "outreach digest for Wed 2 Dec: 1 reply yesterday, 1 email to send today, "
            "1 thing to look at"
        )
        text = "\n".join(lines)
        assert "Yesterday (Tuesday 1 December):" in text
        assert "  Reply from Dr. Reyes (Psychiatrists): replied" in text
        assert "  Auto reply from someone at example.org (no contact matches)" in text
        assert (
            "  A message from an unknown sender could not be handled (RuntimeError): recorded"
            in text
        )
        assert "  Dr. Alma Reyes (Psychiatrists): contacted -> replied (reply)" in text
        assert "  09:05  Intro to Tom Beaulieu (School counselors and teachers)" in text
        assert "  unknown send: x@y.org: check it\n    -> outreach outbox resolve 3 --sent" in text
        assert MESSAGE_ID.findall(text) == []

    def test_a_quiet_day_says_so_and_long_lists_are_cut(self) -> None:
        many = [Heard("reply", REYES, "", "replied") for _ in range(40)]
        subject, lines = compose_digest(DigestFacts(date(2026, 12, 2), many, [], [], []), ZONE)
        assert "40 replies yesterday, 0 emails to send today" in subject
        text = "\n".join(lines)
        assert "... and 10 more" in text
        assert "To send today (0):\n  Nothing is due." in text
        assert "Needs attention:\n  Nothing." in text
