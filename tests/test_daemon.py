"""``outreach run`` as systemd runs it: a child process, a notify socket, real servers, signals."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.configs import edit_config
from tests.conftest import Run
from tests.daemon_harness import (
    DaemonProcess,
    ledger_states,
    received_counts,
    start_daemon,
    write_contacts,
)
from tests.mailstack import Dovecot, Envelope, SmtpServer, free_port, start_smtp

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

FAST = {
    "OUTREACH_DAEMON__DISPATCH_EVERY_SECONDS": "1",
    "OUTREACH_DAEMON__DIGEST": "false",
    "OUTREACH_INBOUND__POLL_SECONDS": "5",
}


@dataclass
class Practice:
    """What the daemon tests share: the example config on the test servers (``outbound_config``),
    the SMTP sink and Dovecot behind it, the CLI on that config, and daemons started on it."""

    config: Path
    sink: SmtpServer
    dovecot: Dovecot
    cli: Callable[..., Run]
    tmp_path: Path
    started: list[DaemonProcess] = field(default_factory=list)

    def start(self, env: dict[str, str] | None = None, *args: str) -> DaemonProcess:
        """``outreach run`` on the config, with FAST and ``env``; closed after the test."""
        log = self.tmp_path / f"daemon{len(self.started)}.log"
        daemon = start_daemon(self.config, log, {**FAST, **(env or {})}, *args)
        self.started.append(daemon)
        return daemon

    @property
    def received(self) -> list[Envelope]:
        return self.sink.received

    def import_contacts(self, count: int) -> list[str]:
        emails = write_contacts(self.tmp_path / "contacts.csv", count)
        result = self.cli("contacts", "import", str(self.tmp_path / "contacts.csv"))
        assert result.exit_code == 0, result.output
        return emails

    def states(self) -> dict[tuple[str, int], str]:
        return ledger_states(self.config)

    def all_settled(self, count: int) -> bool:
        """Whether the ledger has ``count`` rows, each sent or unknown."""
        states = self.states()
        return len(states) == count and all(s in ("sent", "unknown") for s in states.values())


@pytest.fixture
def practice(
    outbound_config: Path,
    smtp_sink: SmtpServer,
    dovecot: Dovecot,
    cli: Callable[..., Run],
    tmp_path: Path,
) -> Iterator[Practice]:
    shared = Practice(outbound_config, smtp_sink, dovecot, cli, tmp_path)
    yield shared
    for daemon in shared.started:
        daemon.close()


class TestLifecycle:
    def test_ready_only_after_logins_then_sends_and_stops_on_sigterm(
        self, practice: Practice
    ) -> None:
        """READY=1 comes with a STATUS line; due steps go out; SIGTERM exits 0 with STOPPING=1."""
        emails = practice.import_contacts(3)
        daemon = practice.start()
        daemon.wait_ready()
        assert any("watching INBOX" in s and "due today" in s for s in daemon.notify.statuses())
        daemon.wait_until("3 sends", lambda: len(practice.received) == 3)
        code, took = daemon.stop(signal.SIGTERM)
        assert code == 0, daemon.output()
        assert took < 10
        assert daemon.notify.count("STOPPING=1") == 1
        assert sorted(received_counts(practice.received)) == sorted(emails)
        states = practice.states()
        assert all(states[(e, 1)] == "sent" for e in emails)
        log = daemon.output()
        assert "ready: watching INBOX" in log
        assert "sent step 1 to p0@org0.example.com" in log
        assert "stopped" in log

    def test_under_journald_every_line_has_a_priority_and_no_secret(
        self, practice: Practice
    ) -> None:
        """With JOURNAL_STREAM naming stderr, each line starts with <N>; passwords never show,
        even in a refused login's error."""
        practice.import_contacts(1)
        journal = practice.tmp_path / "journal.log"
        daemon = start_daemon(practice.config, journal, FAST, journal=True)
        try:
            daemon.wait_ready()
            daemon.wait_until("a send", lambda: len(practice.received) == 1)
            assert daemon.stop()[0] == 0
        finally:
            daemon.close()
        password = os.environ["OUTREACH_SMTP__PASSWORD"]
        wrong = {"OUTREACH_SMTP__PASSWORD": "not-" + password}
        refused = start_daemon(practice.config, journal, {**FAST, **wrong}, journal=True)
        try:
            assert refused.process.wait(30) == 2
        finally:
            refused.close()
        lines = daemon.output().splitlines()
        assert any(line.startswith("<6>outreach.daemon: ready: watching INBOX") for line in lines)
        assert any(line.startswith("<6>outreach.daemon: sent step 1 to p0@") for line in lines)
        assert any(line.startswith("<3>") and "login refused" in line for line in lines), lines
        assert all(re.match(r"<[0-7]>", line) for line in lines), lines
        assert all(password not in line for line in lines)

    def test_second_instance_on_the_same_database_is_refused(self, practice: Practice) -> None:
        first = practice.start()
        first.wait_ready()
        second = practice.start()
        assert second.process.wait(30) == 2
        assert re.search(r"another outreach daemon \(pid \d+\) is already running", second.output())
        assert first.process.poll() is None
        assert first.stop()[0] == 0


class TestStatus:
    def test_status_reports_the_running_daemon_and_exits_3_once_it_stopped(
        self, practice: Practice
    ) -> None:
        cli = practice.cli
        practice.import_contacts(2)
        daemon = practice.start()
        daemon.wait_ready()
        daemon.wait_until("2 sends", lambda: len(practice.received) == 2)
        daemon.wait_until("the pass recorded", lambda: '"2 sent"' in cli("status", "--json").stdout)
        found = json.loads(cli("status", "--json").stdout)
        assert found["running"] is True
        assert found["pid"] == daemon.process.pid
        assert found["last_dispatch_summary"] == "2 sent"
        assert found["last_inbox_sync"] is not None
        assert found["pipeline"] == {"psychiatrist": {"contacted": 2}}
        text = cli("status")
        assert text.exit_code == 0
        assert f"running (pid {daemon.process.pid}" in text.stdout
        assert daemon.stop()[0] == 0
        stopped = cli("status", "--json")
        assert stopped.exit_code == 3
        assert json.loads(stopped.stdout)["running"] is False
        assert "not running" in cli("status").stdout


class TestDigest:
    def test_daily_digest_is_sent_once_a_day_even_across_restarts(self, practice: Practice) -> None:
        """Past digest_time with no digest sent today, the daemon sends it at start; a restart
        the same day does not send another."""
        practice.import_contacts(1)
        env = {"OUTREACH_DAEMON__DIGEST": "true", "OUTREACH_DAEMON__DIGEST_TIME": "00:00:00"}
        daemon = practice.start(env)
        daemon.wait_ready()

        def digests() -> list[Envelope]:
            return [e for e in practice.received if e.message["Subject"].startswith("outreach ")]

        daemon.wait_until("the digest", lambda: len(digests()) == 1)
        assert daemon.stop()[0] == 0
        digest = digests()[0].message
        assert digest["To"] == "maya@calmharbor.example.com"
        assert digest["Auto-Submitted"] == "auto-generated"
        body = digest.get_payload(decode=True).decode()
        assert "Yesterday (" in body
        assert "To send today" in body
        assert "never copies their words" in body
        again = practice.start(env)
        again.wait_ready()
        time.sleep(2)
        assert again.stop()[0] == 0
        assert len(digests()) == 1


class TestFaults:
    def test_smtp_down_at_start_waits_then_becomes_ready_when_it_comes_up(
        self, practice: Practice
    ) -> None:
        """No READY while SMTP is unreachable; STATUS says why; READY once it answers."""
        port = free_port()
        daemon = practice.start({"OUTREACH_SMTP__PORT": str(port)})
        daemon.wait_until(
            "a waiting status",
            lambda: any("waiting for mail servers" in s for s in daemon.notify.statuses()),
        )
        assert daemon.notify.count("READY=1") == 0
        dovecot = practice.dovecot
        server = start_smtp(dovecot.cert, dovecot.directory / "key.pem", port=port)
        try:
            daemon.wait_ready(timeout=40)
            assert "connection refused" in daemon.output()
            assert daemon.stop()[0] == 0
        finally:
            server.stop()

    def test_smtp_unreachable_past_the_start_timeout_exits_1_for_systemd_to_retry(
        self, practice: Practice
    ) -> None:
        daemon = practice.start(
            {
                "OUTREACH_SMTP__PORT": str(free_port()),
                "OUTREACH_DAEMON__STARTUP_TIMEOUT_SECONDS": "2",
            },
        )
        assert daemon.process.wait(30) == 1
        assert "mail servers still unreachable after 2 s" in daemon.output()
        assert daemon.notify.count("READY=1") == 0

    def test_wrong_password_stops_at_once_with_exit_2(self, practice: Practice) -> None:
        """A refused login won't fix itself: no retries (no account lock-outs), exit 2."""
        daemon = practice.start({"OUTREACH_SMTP__PASSWORD": "wrong"})
        assert daemon.process.wait(30) == 2
        assert "can't start: smtp 127.0.0.1" in daemon.output()
        assert "login refused for user03@example.test" in daemon.output()

    @pytest.mark.parametrize("connections", [1, 3])
    def test_smtp_server_vanishing_mid_batch_loses_and_doubles_nothing(
        self, practice: Practice, connections: int
    ) -> None:
        smtp_sink, dovecot = practice.sink, practice.dovecot
        emails = practice.import_contacts(20)
        smtp_sink.handler.delay = 0.2
        daemon = practice.start(
            {
                "OUTREACH_SENDING__RETRY_FIRST_MINUTES": "0.02",
                "OUTREACH_SMTP__CONNECTIONS": str(connections),
            }
        )
        daemon.wait_ready()
        daemon.wait_until("5 sends", lambda: len(smtp_sink.received) >= 5)
        smtp_sink.stop()
        taken = len(smtp_sink.received)
        assert taken < 20, "the batch ended before the server vanished; nothing was tested"
        time.sleep(2)  # passes fail meanwhile; the daemon must live through them
        assert daemon.process.poll() is None
        smtp_sink.handler.delay = 0
        back = start_smtp(
            dovecot.cert,
            dovecot.directory / "key.pem",
            port=smtp_sink.port,
            handler=smtp_sink.handler,
        )
        try:
            daemon.wait_until("every step settled", lambda: practice.all_settled(20), timeout=60)
            assert daemon.stop()[0] == 0
        finally:
            back.stop()
        received = received_counts(smtp_sink.received)
        states = practice.states()
        assert max(received.values()) == 1, "a step was sent twice"
        for email in emails:
            if states[(email, 1)] == "sent":
                assert received[email] == 1, email
        assert "will retry step 1" in daemon.output() or "UNKNOWN" in daemon.output()

    def test_dovecot_restart_while_idle_then_a_reply_is_still_seen(
        self, practice: Practice
    ) -> None:
        dovecot, cli = practice.dovecot, practice.cli
        practice.import_contacts(1)
        daemon = practice.start({"WATCHDOG_USEC": "2000000"})
        daemon.wait_ready()
        daemon.wait_until("the intro", lambda: len(practice.received) == 1)
        intro = practice.received[0].message
        time.sleep(1.5)  # into IDLE
        pings = daemon.notify.count("WATCHDOG=1")
        assert pings >= 1
        dovecot.restart()
        user, _password = dovecot.user(3)
        reply = (
            "From: P0 Q0 <p0@org0.example.com>\r\nTo: maya@calmharbor.example.com\r\n"
            f"Subject: Re: {intro['Subject']}\r\nMessage-ID: <reply-1@org0.example.com>\r\n"
            f"In-Reply-To: {intro['Message-ID']}\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\n"
            "Yes, let's talk next week.\r\n"
        ).encode()
        dovecot.deliver(user, reply)
        daemon.wait_until(
            "the reply",
            lambda: "replied" in cli("contacts", "show", "p0@org0.example.com").stdout,
            60,
        )
        assert daemon.notify.count("WATCHDOG=1") > pings
        daemon.wait_until(
            "a status naming the reply",
            lambda: any("; last reply " in s for s in daemon.notify.statuses()),
        )
        assert daemon.stop()[0] == 0
        assert "inbox: reply from p0@org0.example.com" in daemon.output()
        assert "let's talk" not in daemon.output()  # bodies are never logged

    @pytest.mark.parametrize("connections", [1, 3])
    def test_sigkill_during_a_batch_then_restart_sends_each_step_at_most_once(
        self, practice: Practice, connections: int
    ) -> None:
        emails = practice.import_contacts(30)
        practice.sink.handler.delay = 0.05
        several = {"OUTREACH_SMTP__CONNECTIONS": str(connections)}
        first = practice.start(several)
        first.wait_ready()
        first.wait_until("3 sends", lambda: len(practice.received) >= 3)
        first.stop(signal.SIGKILL)
        at_kill = len(practice.received)
        assert 0 < at_kill < 30, "the kill did not land mid-batch"
        second = practice.start(several)
        second.wait_ready()
        second.wait_until("every step settled", lambda: practice.all_settled(30))
        assert second.stop()[0] == 0
        received = received_counts(practice.received)
        states = practice.states()
        assert max(received.values()) == 1, "a step was sent twice"
        for email in emails:
            assert states[(email, 1)] in ("sent", "unknown")
            if states[(email, 1)] == "sent":
                assert received[email] == 1, email

    def test_sigterm_mid_batch_finishes_the_message_in_flight_and_exits_0(
        self, practice: Practice
    ) -> None:
        practice.import_contacts(10)
        practice.sink.handler.delay = 1.5  # the server takes the message, then thinks
        daemon = practice.start()
        daemon.wait_ready()
        daemon.wait_until("a message in flight", lambda: len(practice.received) == 2)
        code, took = daemon.stop(signal.SIGTERM)
        assert code == 0
        assert took < 10
        states = practice.states()
        assert sorted(states.values()).count("sent") == 2, states
        assert not {"sending", "unknown"} & set(states.values()), states
        assert len(practice.received) == 2

    def test_sighup_keeps_the_running_config_when_the_new_one_is_broken(
        self, practice: Practice
    ) -> None:
        daemon = practice.start()
        daemon.wait_ready()
        good = practice.config.read_text()
        edit_config(practice.config, {"inbound.soft_bounces_before_bounced": 0})
        daemon.send(signal.SIGHUP)
        daemon.wait_until(  # READY=1 follows the refusal's log lines: wait for both
            "the refusal",
            lambda: "reload refused" in daemon.output() and daemon.notify.count("READY=1") >= 2,
        )
        assert "inbound.soft_bounces_before_bounced: must be >= 1" in daemon.output()
        assert daemon.process.poll() is None
        assert daemon.notify.count("RELOADING=1") == 1
        assert daemon.notify.count("READY=1") == 2
        practice.config.write_text(good)
        daemon.send(signal.SIGHUP)
        daemon.wait_until("the reload", lambda: "reloaded: watching INBOX" in daemon.output())
        # The reloaded daemon still works: a new contact is sent to.
        practice.import_contacts(1)
        daemon.wait_until("a send after the reload", lambda: len(practice.received) == 1)
        assert daemon.stop()[0] == 0
