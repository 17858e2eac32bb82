"""The inbox on real Dovecot: replies, out-of-office, bounces and opt-outs act once."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from imapclient import IMAPClient
from sqlalchemy import update

from outreach.config import load_config
from outreach.mail.imap_inbox import ImapInbox
from outreach.runtime.parts import build_parts
from outreach.runtime.threads import in_daemon_thread
from outreach.services.contacts import import_contacts, show_contact
from outreach.services.outbox import list_outbox
from outreach.store.database import Store, open_store
from outreach.store.models import MailboxStateRow
from tests.conftest import Run
from tests.mailstack import Dovecot, SmtpServer

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
CSV = (
    "email,first_name,last_name,organization,segment\n"
    "alma@nb.example.com,Alma,Reyes,North Bay,psychiatrist\n"
    "tom@lm.example.org,Tom,Beaulieu,Lincoln Middle,teacher\n"
)


class Practice:
    """Intros sent to Alma and Tom; the practice's inbox is Dovecot's user03."""

    def __init__(self, config: Path, dovecot: Dovecot) -> None:
        self.settings = load_config(config)
        self.store: Store = open_store(self.settings.database_url)
        import_contacts(
            self.store,
            self.settings.the_pipeline,
            list(self.settings.segments),
            CSV.encode(),
            source="t.csv",
            now=T0,
        )
        parts = build_parts(self.settings, self.store)
        dispatcher = parts.dispatcher
        asyncio.run(dispatcher.run_pass(T0))
        self.ids = {e.email: e.message_id for e in list_outbox(self.store)}
        self.processor = parts.processor
        self.dovecot = dovecot
        self.user = dovecot.user(3)[0]

    def deliver(self, raw: str) -> None:
        self.dovecot.deliver(self.user, raw.replace("\n", "\r\n").encode())

    def sync(self, at: datetime = T0 + timedelta(hours=2)) -> list[tuple[str | None, str]]:
        report = ImapInbox(self.settings.imap).sync_once(self.processor, now=lambda: at)
        return [(r.contact, r.effect) for r in report.results]

    def stage(self, email: str) -> str:
        return show_contact(self.store, email).contact.stage


@pytest.fixture
def practice(outbound_config: Path, dovecot: Dovecot, smtp_sink: SmtpServer) -> Iterator[Practice]:
    p = Practice(outbound_config, dovecot)
    yield p
    p.store.close()


def reply(
    sender: str,
    refers_to: str,
    body: str,
    *,
    subject: str = "Re: Hello",
    extra: str = "",
    message_id: str = "<r1@nb.example.com>",
    date: str = "Mon, 02 Mar 2026 12:00:00 -0500",
) -> str:
    return (
        f"From: {sender}\nTo: maya@calmharbor.example.com\nSubject: {subject}\n"
        f"Date: {date}\nMessage-ID: {message_id}\n"
        f"In-Reply-To: {refers_to}\nReferences: {refers_to}\n{extra}\n{body}\n"
    )


class TestEffects:
    def test_a_reply_stops_the_sequence_once(self, practice: Practice) -> None:
        practice.deliver(
            reply(
                "Alma Reyes <alma@nb.example.com>",
                practice.ids["alma@nb.example.com"],
                "Yes, let's talk next week.",
            )
        )
        assert practice.sync() == [("alma@nb.example.com", "replied; 0 queued step(s) cancelled")]
        assert practice.stage("alma@nb.example.com") == "replied"
        assert practice.sync() == []  # the watermark: nothing new
        # The same message again (a copy in another folder, a UIDVALIDITY reset): once.
        practice.deliver(
            reply(
                "Alma Reyes <alma@nb.example.com>",
                practice.ids["alma@nb.example.com"],
                "Yes, let's talk next week.",
            )
        )
        assert practice.sync() == [(None, "seen before: no effect")]
        history = show_contact(practice.store, "alma@nb.example.com")
        assert [c.to_stage for c in history.stage_changes].count("replied") == 1
        assert history.stage_changes[-1].reason.startswith(
            "reply <r1@nb.example.com> of 2026-03-02"
        )

    def test_out_of_office_pauses_until_after_the_return_date(self, practice: Practice) -> None:
        practice.deliver(
            reply(
                "tom@lm.example.org",
                practice.ids["tom@lm.example.org"],
                "I am out of the office and will return on March 9, 2026.",
                subject="Out of Office: Hello",
                extra="Auto-Submitted: auto-replied",
            )
        )
        ((email, effect),) = practice.sync()
        assert (email, effect) == ("tom@lm.example.org", "paused until 2026-03-10")
        contact = show_contact(practice.store, "tom@lm.example.org").contact
        assert contact.stage == "contacted"  # unchanged: the sequence resumes after the pause

    def test_hard_bounce_suppresses(self, practice: Practice) -> None:
        tom_id = practice.ids["tom@lm.example.org"]
        practice.deliver(
            "From: MAILER-DAEMON@lm.example.org\nTo: maya@calmharbor.example.com\n"
            "Subject: Undelivered Mail Returned to Sender\nMessage-ID: <b1@lm.example.org>\n"
            "MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; "
            'boundary="B"\n\n--B\nContent-Type: text/plain\n\nNo such user.\n'
            "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; lm.example.org\n\n"
            "Final-Recipient: rfc822; tom@lm.example.org\nAction: failed\nStatus: 5.1.1\n\n"
            f"--B\nContent-Type: text/rfc822-headers\n\nMessage-ID: {tom_id}\n\n--B--"
        )
        assert practice.sync() == [("tom@lm.example.org", "bounced and suppressed (user_unknown)")]
        assert practice.stage("tom@lm.example.org") == "bounced"

    def test_opt_out_is_honored(self, practice: Practice) -> None:
        practice.deliver(
            reply(
                "tom@lm.example.org", practice.ids["tom@lm.example.org"], "Please stop emailing me."
            )
        )
        assert practice.sync() == [("tom@lm.example.org", "unsubscribed and suppressed")]
        assert practice.stage("tom@lm.example.org") == "unsubscribed"

    def test_unmatched_flagged_and_our_own(self, practice: Practice) -> None:
        alma_id = practice.ids["alma@nb.example.com"]
        practice.deliver(
            reply("stranger@elsewhere.example.net", "<nothing@x>", "Hello?", message_id="<s1@x>")
        )
        practice.deliver(
            reply("colleague@other.example.net", alma_id, "Forwarding this.", message_id="<s2@x>")
        )
        practice.deliver(
            reply("maya@calmharbor.example.com", alma_id, "my own copy", message_id="<s3@x>")
        )
        effects = [effect for _, effect in practice.sync()]
        assert effects[0] == "no effect: no contact matches"
        assert effects[1].startswith("flagged, no effect: refers to our")
        assert effects[2].startswith("no effect: sent by us")
        assert practice.stage("alma@nb.example.com") == "contacted"


class TestWatcher:
    def test_reads_without_changing_flags(self, practice: Practice) -> None:
        practice.deliver(reply("alma@nb.example.com", practice.ids["alma@nb.example.com"], "Hi"))
        practice.sync()
        user, password = practice.dovecot.user(3)
        with IMAPClient("127.0.0.1", port=practice.dovecot.imap_port, ssl=False) as imap:
            imap.login(user, password)
            imap.select_folder("INBOX", readonly=True)
            flags = imap.get_flags(imap.search("ALL"))
        assert all(b"\\Seen" not in f for f in flags.values())

    def test_catches_up_on_what_arrived_while_down(self, practice: Practice) -> None:
        for n in range(30):
            practice.deliver(
                reply(f"x{n}@unknown.example.net", "<none@x>", "hi", message_id=f"<bulk{n}@x>")
            )
        assert len(practice.sync()) == 30
        assert practice.sync() == []

    def test_a_folder_emptied_by_hand_moves_the_watermark_past_its_old_uids(
        self, practice: Practice
    ) -> None:
        """Mail deleted before we read it leaves UIDNEXT ahead of every UID we saw; without
        moving past it the watcher would think mail is waiting and never settle into IDLE."""
        for n in range(3):
            practice.deliver(reply(f"x{n}@unknown.example.net", "<none@x>", "hi"))
        practice.dovecot.empty(practice.user)
        assert practice.sync() == []
        with IMAPClient("127.0.0.1", port=practice.dovecot.imap_port, ssl=False) as imap:
            imap.login(*practice.dovecot.user(3))
            uidnext = int(imap.select_folder("INBOX", readonly=True)[b"UIDNEXT"])
        with practice.store.session() as session:
            state = session.get(MailboxStateRow, "INBOX")
            assert state is not None
            assert state.last_uid == uidnext - 1

    def test_a_uidvalidity_change_reprocesses_nothing(self, practice: Practice) -> None:
        practice.deliver(reply("alma@nb.example.com", practice.ids["alma@nb.example.com"], "Hi"))
        practice.sync()
        with practice.store.session() as session:
            session.execute(update(MailboxStateRow).values(uidvalidity=1))
        assert practice.sync() == [(None, "seen before: no effect")]


class TestCommands:
    def test_classify_command(self, cli: Callable[..., Run], tmp_path: Path) -> None:
        eml = tmp_path / "ooo.eml"
        eml.write_text(
            reply(
                "alma@nb.example.com",
                "<x@y>",
                "I am on vacation, back on 3/9/2026.",
                subject="Automatic reply: Hello",
            )
        )
        data = json.loads(cli("classify", str(eml), "--json").stdout)
        assert data["kind"] == "out_of_office"
        assert data["return_date"] == "2026-03-09"
        assert data["contact"] is None
        assert data["reasons"]
        text = cli("classify", str(eml)).stdout
        assert "kind: out_of_office" in text

    def test_inbox_sync_once(self, practice: Practice, cli: Callable[..., Run]) -> None:
        practice.deliver(reply("alma@nb.example.com", practice.ids["alma@nb.example.com"], "Yes"))
        run = cli("inbox", "sync", "--once")
        assert run.exit_code == 0, run.output
        assert "reply from alma@nb.example.com: replied" in run.stdout


def wait_for(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


@pytest.fixture
def watching(practice: Practice) -> Iterator[Practice]:
    """The practice with the IDLE watcher running in a thread."""
    stop = threading.Event()
    thread = threading.Thread(
        target=ImapInbox(practice.settings.imap).watch,
        args=(practice.processor,),
        kwargs={"stop": stop, "poll_seconds": 1},
        daemon=True,
    )
    thread.start()
    yield practice
    stop.set()
    thread.join(timeout=15)
    assert not thread.is_alive(), "the watcher did not stop"


class TestIdle:
    def test_a_reply_is_seen_within_seconds(self, watching: Practice) -> None:
        alma = watching.ids["alma@nb.example.com"]
        time.sleep(0.5)  # let the watcher reach IDLE
        watching.deliver(reply("alma@nb.example.com", alma, "Yes, please."))
        assert wait_for(lambda: watching.stage("alma@nb.example.com") == "replied", 10)

    def test_survives_a_dovecot_restart(self, watching: Practice) -> None:
        time.sleep(0.5)
        watching.dovecot.restart()
        tom = watching.ids["tom@lm.example.org"]
        watching.deliver(reply("tom@lm.example.org", tom, "Please remove me."))
        assert wait_for(lambda: watching.stage("tom@lm.example.org") == "unsubscribed", 30)


def test_a_thousand_messages_waiting_at_start(practice: Practice) -> None:
    user, password = practice.dovecot.user(3)
    messages = [
        reply(f"x{n}@unknown.example.net", "<none@x>", "hello", message_id=f"<k{n}@x>")
        .replace("\n", "\r\n")
        .encode()
        for n in range(1000)
    ]
    with IMAPClient("127.0.0.1", port=practice.dovecot.imap_port, ssl=False) as imap:
        imap.login(user, password)
        for start in range(0, 1000, 250):
            imap.multiappend("INBOX", messages[start : start + 250])
    results = practice.sync()
    assert len(results) == 1000
    assert all(effect == "no effect: no contact matches" for _, effect in results)
    assert practice.sync() == []


def dsn_for(recipient: str, original: str, status: str, n: int) -> str:
    action = "delayed" if status.startswith("4") else "failed"
    return (
        f"From: MAILER-DAEMON@mx.example.net\nTo: maya@calmharbor.example.com\n"
        f"Subject: Delivery Status Notification\nMessage-ID: <dsn{n}@mx.example.net>\n"
        "MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; "
        'boundary="B"\n\n--B\nContent-Type: text/plain\n\nTrouble delivering.\n'
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n"
        f"Final-Recipient: rfc822; {recipient}\nAction: {action}\nStatus: {status}\n\n"
        f"--B\nContent-Type: text/rfc822-headers\n\nMessage-ID: {original}\n\n--B--"
    )


class TestBounceClasses:
    def test_soft_bounces_count_up_to_bounced(self, practice: Practice) -> None:
        tom = practice.ids["tom@lm.example.org"]
        for n in range(3):
            practice.deliver(dsn_for("tom@lm.example.org", tom, "4.2.2", n))
        effects = [effect for _, effect in practice.sync()]
        assert effects == [
            "soft bounce 1 recorded (mailbox_full)",
            "soft bounce 2 recorded (mailbox_full)",
            "bounced and suppressed (mailbox_full)",
        ]

    def test_an_unexplained_5_7_x_waits_for_review(self, practice: Practice) -> None:
        """A 5.7.1 whose words say nothing: refused for policy, or by the recipient? A
        guess, so nothing changes and nothing pauses until the therapist decides."""
        tom = practice.ids["tom@lm.example.org"]
        practice.deliver(dsn_for("tom@lm.example.org", tom, "5.7.1", 9))
        ((email, effect),) = practice.sync()
        assert email == "tom@lm.example.org"
        assert effect.startswith("held for review: a low-confidence policy bounce")
        assert practice.stage("tom@lm.example.org") == "contacted"
        dispatcher = build_parts(practice.settings, practice.store).dispatcher
        assert dispatcher.paused_reason() is None


def test_a_connection_dropped_mid_fetch_is_retried(
    practice: Practice, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drop in the middle of a FETCH can't be timed on a real server: a fake one fails once."""
    for n in range(5):
        practice.deliver(
            reply(f"y{n}@unknown.example.net", "<none@x>", "hi", message_id=f"<drop{n}@x>")
        )
    real_fetch = IMAPClient.fetch
    calls = {"n": 0}

    def flaky_fetch(self: IMAPClient, *args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            self.shutdown()
            raise OSError("connection reset by peer")
        return real_fetch(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(IMAPClient, "fetch", flaky_fetch)
    stop = threading.Event()
    seen: list[int] = []
    thread = threading.Thread(
        target=ImapInbox(practice.settings.imap).watch,
        args=(practice.processor,),
        kwargs={
            "stop": stop,
            "poll_seconds": 1,
            "on_pass": lambda report: seen.append(len(report.results)),
        },
        daemon=True,
    )
    thread.start()
    assert wait_for(lambda: sum(seen) >= 5, 15)
    stop.set()
    thread.join(timeout=15)
    assert sum(seen) == 5 and calls["n"] >= 2  # every message once, after one reconnect


def test_extra_folders_are_read_while_idling(
    practice: Practice, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply a server-side filter put in another folder is seen within poll_seconds."""
    user, password = practice.dovecot.user(3)
    with IMAPClient("127.0.0.1", port=practice.dovecot.imap_port, ssl=False) as imap:
        imap.login(user, password)
        if not imap.folder_exists("Referrals"):
            imap.create_folder("Referrals")
    monkeypatch.setenv("OUTREACH_IMAP__FOLDERS", '["INBOX", "Referrals"]')
    imap_settings = load_config(practice.settings.path).imap
    stop = threading.Event()
    thread = threading.Thread(
        target=asyncio.run,
        args=(
            in_daemon_thread(
                lambda: ImapInbox(imap_settings).watch(
                    practice.processor, stop=stop, poll_seconds=1
                ),
                stop,
            ),
        ),
        daemon=True,
    )
    thread.start()
    time.sleep(0.5)
    with IMAPClient("127.0.0.1", port=practice.dovecot.imap_port, ssl=False) as imap:
        imap.login(user, password)
        imap.append(
            "Referrals",
            reply("alma@nb.example.com", practice.ids["alma@nb.example.com"], "Yes.")
            .replace("\n", "\r\n")
            .encode(),
        )
    try:
        assert wait_for(lambda: practice.stage("alma@nb.example.com") == "replied", 10)
    finally:
        stop.set()
        thread.join(timeout=15)
