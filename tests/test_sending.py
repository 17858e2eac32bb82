"""Sending on real servers: aiosmtpd (faults injected per test) and Dovecot for the Sent folder."""

from __future__ import annotations

import asyncio
import email
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from imapclient import IMAPClient

from outreach.config import Settings, load_config
from outreach.runtime.parts import build_parts
from outreach.services.dispatch import DispatchReport
from outreach.services.outbox import list_outbox, resolve_outbox, resume_sending
from outreach.store.database import Store, open_store
from tests.conftest import ROOT, Run
from tests.mailstack import Dovecot, SmtpServer

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # a Monday, 10:00 in New York
CSV = (
    "email,first_name,last_name,organization,segment\n"
    "alma@nb.example.com,Alma,Reyes,North Bay,psychiatrist\n"
    "tom@lm.example.org,Tom,Beaulieu,Lincoln Middle,teacher\n"
)


class World:
    """A configured practice with two imported contacts, driven pass by pass."""

    def __init__(self, config: Path, now: datetime = T0) -> None:
        from outreach.services.contacts import import_contacts

        self.settings: Settings = load_config(config)
        self.store: Store = open_store(self.settings.database_url)
        self.dispatcher = build_parts(self.settings, self.store).dispatcher
        import_contacts(
            self.store,
            self.settings.the_pipeline,
            list(self.settings.segments),
            CSV.encode(),
            source="t.csv",
            now=now,
        )

    def run(self, now: datetime) -> DispatchReport:
        return asyncio.run(self.dispatcher.run_pass(now))

    def states(self) -> list[tuple[str, int, str]]:
        return sorted((e.email, e.step, e.state) for e in list_outbox(self.store))


@pytest.fixture
def world(outbound_config: Path) -> Iterator[World]:
    w = World(outbound_config)
    yield w
    w.store.close()


def messages(server: SmtpServer) -> list[email.message.Message]:
    return [email.message_from_bytes(e.data) for e in server.received]


class TestSequence:
    def test_intro_goes_out_once_with_the_right_headers(
        self, world: World, smtp_sink: SmtpServer
    ) -> None:
        report = world.run(T0)
        assert sorted(line.email for line in report.sent) == [
            "alma@nb.example.com",
            "tom@lm.example.org",
        ]
        assert world.run(T0 + timedelta(minutes=1)).sent == []  # nothing twice
        alma = next(m for m in messages(smtp_sink) if m["To"].endswith("<alma@nb.example.com>"))
        from outreach.services.forecast import preview

        shown = preview(world.dispatcher, "alma@nb.example.com", step="1", now=T0)
        assert alma["Subject"] == shown.subject and alma["Subject"]  # what preview showed
        assert alma["Message-ID"].endswith("@calmharbor.example.com>")
        assert alma["List-Unsubscribe"] == (
            "<mailto:maya@calmharbor.example.com?subject=unsubscribe>"
        )
        body = alma.get_payload(decode=True).decode()
        assert "Dear Dr. Reyes," in body
        assert "120 Harbor Street" in body and "unsubscribe" in body
        assert smtp_sink.received[0].mail_from == "maya@calmharbor.example.com"
        from outreach.services.contacts import show_contact

        history = show_contact(world.store, "alma@nb.example.com")
        assert history.contact.stage == "contacted"
        assert history.stage_changes[-1].reason.startswith("step 1 sent <")

    def test_follow_ups_thread_after_business_days(
        self, world: World, smtp_sink: SmtpServer
    ) -> None:
        world.run(T0)
        assert world.run(T0 + timedelta(days=3)).sent == []  # 4 business days not yet over
        report = world.run(T0 + timedelta(days=4, minutes=1))
        assert [line.email for line in report.sent] == ["alma@nb.example.com"]
        intro, follow_up = [
            m for m in messages(smtp_sink) if m["To"].endswith("<alma@nb.example.com>")
        ]
        assert follow_up["Subject"] == "Re: " + intro["Subject"]
        assert follow_up["In-Reply-To"] == intro["Message-ID"]
        assert follow_up["References"] == intro["Message-ID"]

    def test_a_reply_stops_the_sequence(self, world: World) -> None:
        from outreach.services.contacts import set_stage

        world.run(T0)
        set_stage(
            world.store,
            world.settings.the_pipeline,
            "alma@nb.example.com",
            "replied",
            now=T0 + timedelta(days=1),
        )
        later = world.run(T0 + timedelta(days=30)).sent
        assert [line.email for line in later] == ["tom@lm.example.org"]

    def test_moving_back_by_hand_resumes_the_sequence(self, world: World) -> None:
        from outreach.services.contacts import set_stage

        world.run(T0)
        pipeline = world.settings.the_pipeline
        set_stage(world.store, pipeline, "alma@nb.example.com", "replied", now=T0)
        stopped = world.run(T0 + timedelta(days=5)).sent
        assert "alma@nb.example.com" not in [line.email for line in stopped]
        set_stage(
            world.store,
            pipeline,
            "alma@nb.example.com",
            "contacted",
            now=T0 + timedelta(days=5),
            note="the reply was not about this",
        )
        resumed = world.run(T0 + timedelta(days=5, minutes=1))
        assert ("alma@nb.example.com", 2) in [(line.email, line.step) for line in resumed.sent]

    def test_no_response_after_the_last_step(self, world: World) -> None:
        sent = []
        for day in range(0, 60):
            report = world.run(T0 + timedelta(days=day))
            sent += [line.email for line in report.sent]
            if report.finished:
                break
        # The psychiatrist's three steps (0, 4, 7 business days) end first.
        assert sent.count("alma@nb.example.com") == 3
        assert report.finished == ["alma@nb.example.com"]

    def test_suppressed_address_gets_nothing(self, world: World) -> None:
        from outreach.store.ledger import suppress

        with world.store.session() as session:
            suppress(session, "tom@lm.example.org", "asked by phone", T0)
        assert [line.email for line in world.run(T0).sent] == ["alma@nb.example.com"]


class TestFaults:
    def test_temporary_failure_is_retried_later(self, world: World, smtp_sink: SmtpServer) -> None:
        smtp_sink.handler.data_replies += ["451 4.3.0 try again later"]
        first = world.run(T0)
        assert len(first.retrying) == 1 and len(first.sent) == 1
        assert world.run(T0 + timedelta(minutes=5)).sent == []  # backoff: 10 minutes first
        again = world.run(T0 + timedelta(minutes=11))
        assert len(again.sent) == 1
        assert [s for _, _, s in world.states()] == ["sent", "sent"]
        ids = [m["Message-ID"] for m in messages(smtp_sink)]
        assert len(ids) == len(set(ids)) == 2

    def test_permanent_failure_bounces_and_suppresses(
        self, world: World, smtp_sink: SmtpServer
    ) -> None:
        from outreach.services.contacts import show_contact

        smtp_sink.handler.rcpt_replies += ["550 5.1.1 no such user"]
        report = world.run(T0)
        assert len(report.failed) == 1
        bounced = report.failed[0].email
        assert show_contact(world.store, bounced).contact.stage == "bounced"
        later = world.run(T0 + timedelta(days=30)).sent
        assert bounced not in [line.email for line in later]

    def test_policy_rejection_pauses_all_sending(self, world: World, smtp_sink: SmtpServer) -> None:
        smtp_sink.handler.data_replies += ["554 5.7.1 message rejected as spam"]
        report = world.run(T0)
        assert report.paused is not None and "5.7.1" in report.paused
        assert report.sent == []  # the pass stopped at once
        assert world.run(T0 + timedelta(minutes=5)).paused is not None
        assert resume_sending(world.store) is not None
        assert len(world.run(T0 + timedelta(minutes=6)).sent) == 2

    def test_a_refused_sender_pauses_and_bounces_nobody(
        self, world: World, smtp_sink: SmtpServer
    ) -> None:
        """553 at MAIL FROM is about our address, not the recipient's: all sending pauses for
        the therapist; no contact is bounced or suppressed."""
        from outreach.services.contacts import show_contact

        smtp_sink.handler.mail_replies += ["553 5.1.7 sender address rejected"]
        report = world.run(T0)
        assert report.paused is not None and "553" in report.paused
        assert report.failed == []
        for address in ("alma@nb.example.com", "tom@lm.example.org"):
            assert show_contact(world.store, address).contact.stage == "new"

    def test_connection_lost_during_data_is_unknown_never_resent(
        self, world: World, smtp_sink: SmtpServer
    ) -> None:
        smtp_sink.handler.data_replies += ["DISCONNECT"]
        report = world.run(T0)
        assert len(report.unknown) == 1
        for minutes in (1, 60, 600):
            world.run(T0 + timedelta(minutes=minutes))
        assert len(smtp_sink.received) == 2  # the lost one was received once, never again
        unknown = [e for e in list_outbox(world.store) if e.state == "unknown"]
        assert len(unknown) == 1
        resolve_outbox(world.store, unknown[0].id, sent=False, now=T0)
        world.run(T0 + timedelta(minutes=700))
        assert len(smtp_sink.received) == 3
        assert [m["Message-ID"] for m in messages(smtp_sink)].count(unknown[0].message_id) == 2

    def test_server_down_sends_and_claims_nothing(
        self, world: World, smtp_sink: SmtpServer
    ) -> None:
        smtp_sink.stop()
        report = world.run(T0)
        assert report.sent == [] and "connection refused" in report.problems[0]
        assert list_outbox(world.store) == []


class TestPipelining:
    """A server offering PIPELINING (RFC 2920) gets MAIL, RCPT and DATA in one write; every
    refusal still means what it means without it."""

    @pytest.fixture(autouse=True)
    def pipelined(self, smtp_sink: SmtpServer) -> None:
        smtp_sink.handler.pipelining = True

    def test_both_steps_go_out(self, world: World, smtp_sink: SmtpServer) -> None:
        assert len(world.run(T0).sent) == 2
        assert sorted(e.rcpt_tos[0] for e in smtp_sink.received) == [
            "alma@nb.example.com",
            "tom@lm.example.org",
        ]
        assert all(e.mail_from == "maya@calmharbor.example.com" for e in smtp_sink.received)

    def test_a_refused_recipient_bounces_and_the_next_one_goes(
        self, world: World, smtp_sink: SmtpServer
    ) -> None:
        smtp_sink.handler.rcpt_replies += ["550 5.1.1 no such user"]
        report = world.run(T0)
        assert len(report.failed) == 1 and len(report.sent) == 1
        assert len(smtp_sink.received) == 1  # DATA after the refused RCPT carried nothing

    def test_a_refused_sender_is_retried(self, world: World, smtp_sink: SmtpServer) -> None:
        smtp_sink.handler.mail_replies += ["451 4.3.2 try later"]
        report = world.run(T0)
        assert len(report.retrying) == 1 and len(report.sent) == 1
        assert len(world.run(T0 + timedelta(minutes=11)).sent) == 1

    def test_a_policy_refusal_pauses(self, world: World, smtp_sink: SmtpServer) -> None:
        smtp_sink.handler.data_replies += ["554 5.7.1 message rejected as spam"]
        assert world.run(T0).paused is not None

    def test_connection_lost_during_data_is_unknown(
        self, world: World, smtp_sink: SmtpServer
    ) -> None:
        smtp_sink.handler.data_replies += ["DISCONNECT"]
        report = world.run(T0)
        assert len(report.unknown) == 1 and len(report.sent) == 1
        world.run(T0 + timedelta(minutes=60))
        assert len(smtp_sink.received) == 2


def test_pipelined_commands_leave_in_one_write() -> None:
    """On the wire: MAIL, RCPT and DATA arrive together; the content after the 354."""
    from outreach.config.schema import Smtp
    from outreach.mail.compose import OutboundMessage
    from outreach.mail.smtp import SmtpSession

    chunks: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 wire.test ESMTP\r\n")
        in_data = False
        while chunk := await reader.read(65536):
            chunks.append(chunk)
            if in_data:
                in_data = not chunk.endswith(b"\r\n.\r\n")
                writer.write(b"" if in_data else b"250 2.0.0 queued\r\n")
                continue
            for line in chunk.decode().split("\r\n")[:-1]:
                verb = line[:4].upper()
                if verb == "EHLO":
                    writer.write(b"250-wire.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                elif verb == "DATA":
                    writer.write(b"354 go on\r\n")
                    in_data = True
                elif verb == "QUIT":
                    writer.write(b"221 bye\r\n")
                else:
                    writer.write(b"250 ok\r\n")
        writer.close()
        await writer.wait_closed()
        served.set()

    served = asyncio.Event()

    async def scenario() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        message = OutboundMessage(
            "<1@x>", "me@x.example.com", "you@y.example.com", "Hi", b"a\r\n.b\r\n"
        )
        async with SmtpSession(Smtp(host="127.0.0.1", port=port, security="none")) as session:
            for _ in range(2):
                assert (await session.send(message)).outcome.name == "SENT"
        await asyncio.wait_for(served.wait(), 10)
        server.close()
        await server.wait_closed()

    asyncio.run(scenario())
    envelope = b"MAIL FROM:<me@x.example.com>\r\nRCPT TO:<you@y.example.com>\r\nDATA\r\n"
    assert chunks[1:] == [envelope, b"a\r\n..b\r\n.\r\n"] * 2 + [b"QUIT\r\n"]


def test_a_server_that_floods_without_line_ends_is_left() -> None:
    """A peer pouring bytes with no line end is not an SMTP server: the session ends with a
    retry (nothing was handed over) instead of buffering without limit."""
    from outreach.config.schema import Smtp
    from outreach.mail.compose import OutboundMessage
    from outreach.mail.smtp import MAX_REPLY_BYTES, SmtpSession

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 flood.test ESMTP\r\n")
        await reader.readline()  # EHLO
        writer.write(b"250 flood.test\r\n")
        await reader.readline()  # MAIL
        writer.write(b"2" * (MAX_REPLY_BYTES + 10))
        await reader.read()  # until we hang up
        writer.close()
        await writer.wait_closed()
        served.append(True)

    served: list[bool] = []

    async def scenario() -> str:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        message = OutboundMessage("<1@x>", "me@x.example.com", "you@y.example.com", "Hi", b"a")
        async with SmtpSession(Smtp(host="127.0.0.1", port=port, security="none")) as session:
            delivery = await session.send(message)
        for _ in range(200):  # both attempts' handlers done before the loop ends
            if len(served) == 2:
                break
            await asyncio.sleep(0.05)
        server.close()
        await server.wait_closed()
        return f"{delivery.outcome.name}: {delivery.detail}"

    outcome = asyncio.run(scenario())
    assert outcome.startswith("RETRY") and "longer than" in outcome


class TestSentFolder:
    def test_sent_copies_are_filed_and_reconcile_an_interrupted_send(
        self,
        outbound_config: Path,
        dovecot: Dovecot,
        smtp_sink: SmtpServer,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setenv("OUTREACH_IMAP__SAVE_SENT", "true")
        world = World(outbound_config)
        try:
            assert len(world.run(T0).sent) == 2
            user, password = dovecot.user(3)
            with IMAPClient("127.0.0.1", port=dovecot.imap_port, ssl=False) as imap:
                imap.login(user, password)
                imap.select_folder("Sent", readonly=True)
                assert len(imap.search("ALL")) == 2
            # Simulate a crash after the send: the row is left in 'sending'.
            with world.store.session() as session:
                from outreach.store.models import OutboxRow

                row = session.query(OutboxRow).first()
                assert row is not None
                row.state = "sending"
            report = world.run(T0 + timedelta(minutes=1))
            assert len(report.reconciled) == 1
            assert sorted(s for _, _, s in world.states()) == ["sent", "sent"]
        finally:
            world.store.close()


class TestCommands:
    def test_send_due_and_plan_from_the_cli(
        self, outbound_config: Path, cli: Callable[..., Run], smtp_sink: SmtpServer
    ) -> None:
        assert (
            cli("contacts", "import", str(ROOT / "config" / "contacts.example.csv")).exit_code == 0
        )
        planned = json.loads(
            cli("plan", "--days", "30", "--now", "2026-11-30T08:00", "--json").stdout
        )
        example = (ROOT / "config" / "contacts.example.csv").read_text().splitlines()[1:]
        everyone = {line.split(",")[0] for line in example}
        assert len(everyone) == 11
        assert {p["email"] for p in planned if p["step"] == 1} == everyone
        dry = cli("send-due", "--dry-run", "--now", "2026-11-30T09:00")
        assert dry.exit_code == 0 and "would send step 1" in dry.stdout
        assert smtp_sink.received == []
        run = cli("send-due", "--once", "--now", "2026-11-30T09:00")
        assert run.exit_code == 0, run.output
        assert run.stdout.count("sent step 1") == 11
        assert len(smtp_sink.received) == 11
        preview = cli("preview", "grace.okafor@stmarkschurch.example.org", "--step", "2")
        assert "Subject: Re: When a congregant needs more than pastoral care" in preview.stdout
        assert "In-Reply-To: <" in preview.stdout

    def test_templates_check_names_file_line_variable_and_contact(
        self,
        outbound_config: Path,
        cli: Callable[..., Run],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        import shutil

        templates = tmp_path / "templates"
        shutil.copytree(ROOT / "templates", templates)
        monkeypatch.setenv("OUTREACH_TEMPLATES__DIR", str(templates))
        (tmp_path / "c.csv").write_text("email,segment,last_name\nx@y.example.com,teacher,Ng\n")
        assert cli("contacts", "import", str(tmp_path / "c.csv")).exit_code == 0
        assert cli("templates", "check").exit_code == 0  # no first name: the greeting copes

        (templates / "teacher" / "intro.txt.j2").write_text(
            'Subject: Hi\n\n{{ first_nme }}\n{% include "_partials/footer.txt.j2" %}\n'
        )
        run = cli("templates", "check")
        assert run.exit_code == 2
        [line] = run.stderr.splitlines()
        assert line.startswith("teacher/intro.txt.j2, line 3: ") and "'first_nme'" in line
        assert line.endswith("(segment teacher, step 1, contact x@y.example.com)")
        send = cli("send-due", "--once")
        assert send.exit_code == 2 and "nothing is sent" in send.stderr

        (templates / "clergy" / "intro.txt.j2").write_text("Subject: Hi\n\n{{ practice.nme }\n")
        run = cli("templates", "check")
        assert "clergy/intro.txt.j2, line 3:" in run.stderr

        (templates / "clergy" / "intro.txt.j2").write_text("Subject: Hi\n\nNo footer here.\n")
        assert "leaves out the footer" in cli("templates", "check").stderr

        (templates / "clergy" / "intro.txt.j2").unlink()
        (templates / "_default" / "intro.txt.j2").unlink()
        assert "no template 'intro' for segment 'clergy'" in cli("templates", "check").stderr


class TestBadServers:
    def test_wrong_password_sends_nothing(
        self,
        outbound_config: Path,
        cli: Callable[..., Run],
        smtp_sink: SmtpServer,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        assert (
            cli("contacts", "import", str(ROOT / "config" / "contacts.example.csv")).exit_code == 0
        )
        monkeypatch.setenv("OUTREACH_SMTP__PASSWORD", "not-the-password")
        run = cli("send-due", "--once", "--now", "2026-11-30T09:00")
        assert run.exit_code == 1
        assert "login refused for user03@example.test" in run.stderr
        assert "not-the-password" not in run.output
        assert smtp_sink.received == []
        assert json.loads(cli("outbox", "list", "--json").stdout) == []

    def test_a_tls_mode_the_server_does_not_speak(
        self,
        outbound_config: Path,
        cli: Callable[..., Run],
        smtp_sink: SmtpServer,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        assert (
            cli("contacts", "import", str(ROOT / "config" / "contacts.example.csv")).exit_code == 0
        )
        monkeypatch.setenv("OUTREACH_SMTP__SECURITY", "tls")  # the server speaks STARTTLS
        run = cli("send-due", "--once", "--now", "2026-11-30T09:00")
        assert run.exit_code == 1
        assert "smtp 127.0.0.1:" in run.stderr and "check smtp.security and port" in run.stderr
        assert smtp_sink.received == []


@pytest.mark.postgres
def test_the_same_pass_runs_on_postgresql(
    outbound_config: Path,
    smtp_sink: SmtpServer,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "OUTREACH_STORAGE__URL", request.getfixturevalue("postgres").create_database()
    )
    world = World(outbound_config)
    try:
        assert len(world.run(T0).sent) == 2
        assert world.run(T0 + timedelta(minutes=1)).sent == []
        follow_up = world.run(T0 + timedelta(days=4, minutes=1))
        assert [line.email for line in follow_up.sent] == ["alma@nb.example.com"]
        assert world.states() == [
            ("alma@nb.example.com", 1, "sent"),
            ("alma@nb.example.com", 2, "sent"),
            ("tom@lm.example.org", 1, "sent"),
        ]
    finally:
        world.store.close()


class TestNurture:
    """Engaged and referring sources get a check-in every `nurture_every_days` (90 for
    psychiatrists in the example), under the same sending policy, as a new conversation."""

    def test_an_engaged_source_gets_a_check_in_every_90_days(
        self, world: World, smtp_sink: SmtpServer
    ) -> None:
        from outreach.services.contacts import set_stage

        world.run(T0)  # both intros
        engaged_at = T0 + timedelta(days=2)
        set_stage(
            world.store,
            world.settings.the_pipeline,
            "alma@nb.example.com",
            "engaged",
            now=engaged_at,
        )
        before = len(smtp_sink.received)
        quiet = world.run(engaged_at + timedelta(days=89))
        assert "alma@nb.example.com" not in [line.email for line in quiet.sent]
        first = world.run(engaged_at + timedelta(days=90, minutes=1))
        assert [(line.email, line.step) for line in first.sent if line.step > 1000] == [
            ("alma@nb.example.com", 2001)
        ]
        nurture = messages(smtp_sink)[before:]
        check_in = [m for m in nurture if m["To"].endswith("<alma@nb.example.com>")]
        assert len(check_in) == 1
        assert check_in[0]["Subject"] == "A quick check-in from Calm Harbor Counseling"
        assert check_in[0]["In-Reply-To"] is None  # its own conversation
        assert "List-Unsubscribe" in check_in[0]
        again = world.run(engaged_at + timedelta(days=91))
        assert "alma@nb.example.com" not in [line.email for line in again.sent]
        second = world.run(engaged_at + timedelta(days=181))
        assert ("alma@nb.example.com", 2002) in [(line.email, line.step) for line in second.sent]
        steps = [(e, s, st) for e, s, st in world.states() if e == "alma@nb.example.com"]
        assert [s for _e, s, _st in steps if s > 2000] == [2001, 2002]

    def test_no_check_in_for_other_stages_or_suppressed_sources(
        self, world: World, smtp_sink: SmtpServer
    ) -> None:
        from outreach.services.contacts import set_stage
        from outreach.store.ledger import suppress

        world.run(T0)
        pipeline = world.settings.the_pipeline
        set_stage(world.store, pipeline, "alma@nb.example.com", "replied", now=T0)
        set_stage(world.store, pipeline, "tom@lm.example.org", "referring", now=T0)
        with world.store.session() as session:
            suppress(session, "tom@lm.example.org", "asked to stop", T0)
            session.commit()
        report = world.run(T0 + timedelta(days=200))
        assert [line for line in report.sent if line.step > 1000] == []


def test_steps_read_as_people_say_them() -> None:
    from outreach.domain.sequencing import step_label

    assert [step_label(n) for n in (1, 3, 1001, 2001, 2002)] == [
        "step 1",
        "step 3",
        "rule reply",
        "check-in 1",
        "check-in 2",
    ]


def test_plan_forecasts_check_ins_and_queued_rule_replies(world: World) -> None:
    """plan shows what the dispatcher will send: a waiting rule reply (once crashed with an
    IndexError: a reply's step is past the sequence) and an engaged source's check-in."""
    from outreach.services.contacts import set_stage
    from outreach.services.forecast import plan
    from outreach.services.workflow import queue_reply

    world.run(T0)
    pipeline = world.settings.the_pipeline
    engaged_at = T0 + timedelta(days=1)
    set_stage(world.store, pipeline, "alma@nb.example.com", "engaged", now=engaged_at)
    with world.store.session() as session:
        from sqlalchemy import select

        from outreach.store.models import ContactRow

        tom = session.scalars(
            select(ContactRow).where(ContactRow.email == "tom@lm.example.org")
        ).one()
        queue_reply(session, world.settings, tom, "thank_you", engaged_at)
        session.commit()
    planned = plan(world.dispatcher, now=engaged_at, days=100)
    forecast = [(p.email, p.step, p.template) for p in planned]
    assert ("tom@lm.example.org", 1001, "thank_you") in forecast
    check_ins = [p for p in planned if p.email == "alma@nb.example.com" and p.step > 2000]
    assert [(p.step, p.template) for p in check_ins] == [(2001, "nurture")]
    assert check_ins[0].at >= engaged_at + timedelta(days=90)


def test_a_rule_reply_after_a_check_in_is_numbered_as_a_reply(
    world: World, smtp_sink: SmtpServer
) -> None:
    from sqlalchemy import select

    from outreach.services.contacts import set_stage
    from outreach.services.workflow import queue_reply
    from outreach.store.models import ContactRow

    world.run(T0)
    set_stage(world.store, world.settings.the_pipeline, "alma@nb.example.com", "engaged", now=T0)
    world.run(T0 + timedelta(days=91))  # the first check-in: step index 2000
    with world.store.session() as session:
        alma = session.scalars(
            select(ContactRow).where(ContactRow.email == "alma@nb.example.com")
        ).one()
        queue_reply(session, world.settings, alma, "thank_you", T0 + timedelta(days=92))
        session.commit()
    steps = sorted(s for e, s, _st in world.states() if e == "alma@nb.example.com")
    assert steps == [1, 1001, 2001]
