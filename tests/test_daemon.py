"""``outreach run`` as systemd runs it: a child process, a notify socket, real servers, signals."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Run
from tests.daemon_harness import (
    DaemonProcess,
    ledger_states,
    received_counts,
    start_daemon,
    write_contacts,
)
from tests.mailstack import SmtpServer

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

FAST = {
    "OUTREACH_DAEMON__DISPATCH_EVERY_SECONDS": "1",
    "OUTREACH_DAEMON__DIGEST": "false",
    "OUTREACH_INBOUND__POLL_SECONDS": "5",
}


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def start(config: Path, env: dict[str, str] | None = None, *args: str) -> DaemonProcess:
        daemon = start_daemon(
            config, tmp_path / f"daemon{len(started)}.log", {**FAST, **(env or {})}, *args
        )
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.close()


def _import(cli: Callable[..., Run], tmp_path: Path, count: int) -> list[str]:
    emails = write_contacts(tmp_path / "contacts.csv", count)
    result = cli("contacts", "import", str(tmp_path / "contacts.csv"))
    assert result.exit_code == 0, result.output
    return emails


class TestLifecycle:
    def test_ready_only_after_logins_then_sends_and_stops_on_sigterm(
        self,
        outbound_config: Path,
        smtp_sink: SmtpServer,
        cli: Callable[..., Run],
        daemons: Callable[..., DaemonProcess],
        tmp_path: Path,
    ) -> None:
        """READY=1 comes with a STATUS line; due steps go out; SIGTERM exits 0 with STOPPING=1."""
        emails = _import(cli, tmp_path, 3)
        daemon = daemons(outbound_config)
        daemon.wait_ready()
        assert any("watching INBOX" in s and "due today" in s for s in daemon.notify.statuses())
        daemon.wait_until("3 sends", lambda: len(smtp_sink.received) == 3)
        code, took = daemon.stop(signal.SIGTERM)
        assert code == 0, daemon.output()
        assert took < 10
        assert daemon.notify.count("STOPPING=1") == 1
        assert sorted(received_counts(smtp_sink.received)) == sorted(emails)
        states = ledger_states(outbound_config)
        assert all(states[(e, 1)] == "sent" for e in emails)
        log = daemon.output()
        assert "ready: watching INBOX" in log
        assert "sent step 1 to p0@org0.example.com" in log
        assert "stopped" in log

    def test_under_journald_every_line_has_a_priority_and_no_secret(
        self,
        outbound_config: Path,
        smtp_sink: SmtpServer,
        cli: Callable[..., Run],
        tmp_path: Path,
    ) -> None:
        """With JOURNAL_STREAM naming stderr, each line starts with <N>; passwords never show,
        even in a refused login's error."""
        _import(cli, tmp_path, 1)
        daemon = start_daemon(outbound_config, tmp_path / "journal.log", FAST, journal=True)
        try:
            daemon.wait_ready()
            daemon.wait_until("a send", lambda: len(smtp_sink.received) == 1)
            assert daemon.stop()[0] == 0
        finally:
            daemon.close()
        password = os.environ["OUTREACH_SMTP__PASSWORD"]
        wrong = {"OUTREACH_SMTP__PASSWORD": "not-" + password}
        refused = start_daemon(
            outbound_config, tmp_path / "journal.log", {**FAST, **wrong}, journal=True
        )
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

    def test_second_instance_on_the_same_database_is_refused(
        self,
        outbound_config: Path,
        smtp_sink: SmtpServer,
        daemons: Callable[..., DaemonProcess],
    ) -> None:
        first = daemons(outbound_config)
        first.wait_ready()
        second = daemons(outbound_config)
        assert second.process.wait(30) == 2
        assert re.search(r"another outreach daemon \(pid \d+\) is already running", second.output())
        assert first.process.poll() is None
        assert first.stop()[0] == 0
