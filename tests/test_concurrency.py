"""Two dispatch passes at once, on both backends: the second never takes the first's sends
for interrupted ones (a false ``unknown`` invites ``outbox resolve --resend``: a double send)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from outreach.store.instance import daemon_running
from tests.daemon_harness import ledger_states, received_counts, start_daemon, write_contacts
from tests.mailstack import Postgres, SmtpServer

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

CONTACTS = 20
DELAY = 0.2  # the server holds each message this long: a send stays `sending` that long
FAST = {"OUTREACH_DAEMON__DISPATCH_EVERY_SECONDS": "1", "OUTREACH_DAEMON__DIGEST": "false"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(
    request: pytest.FixtureRequest, outbound_config: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """``outbound_config`` on SQLite, or on a new PostgreSQL database."""
    if request.param == "postgres":
        server: Postgres = request.getfixturevalue("postgres")
        monkeypatch.setenv("OUTREACH_STORAGE__URL", server.create_database())
    return outbound_config


def test_a_second_send_due_waits_for_the_first_and_marks_nothing_unknown(
    backend: Path, smtp_sink: SmtpServer, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "outreach", "--config", str(backend)]
    emails = write_contacts(tmp_path / "contacts.csv", CONTACTS)
    subprocess.run(
        [*command, "contacts", "import", str(tmp_path / "contacts.csv")],
        env=dict(os.environ),
        check=True,
        capture_output=True,
    )
    send = [*command, "send-due", "--once", "--now", "2027-03-01T10:00"]
    smtp_sink.handler.delay = DELAY
    first = subprocess.Popen(send, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while len(smtp_sink.received) < 2:  # the first pass is sending: a row is `sending` now
        assert time.monotonic() < deadline, "the first pass sent nothing in 60 s"
        assert first.poll() is None, first.communicate()[0]
        time.sleep(0.01)
    second = subprocess.run(send, capture_output=True, text=True, timeout=180, check=False)
    first_out = first.communicate(timeout=180)[0]

    assert first.returncode == 0, first_out
    assert second.returncode == 0, second.stdout + second.stderr
    assert "UNKNOWN" not in first_out + second.stdout + second.stderr
    assert "waiting for it to finish" in second.stderr  # it said why it paused
    states = ledger_states(backend)
    assert sorted(states.values()) == ["sent"] * CONTACTS
    assert received_counts(smtp_sink.received) == dict.fromkeys(emails, 1)


@pytest.mark.postgres
def test_the_daemon_takes_its_lock_back_after_a_postgresql_restart(
    outbound_config: Path, postgres: Postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart ends the session holding the advisory lock; a second daemon must still be
    refused once the first has had a few seconds to notice."""
    url = postgres.create_database()
    monkeypatch.setenv("OUTREACH_STORAGE__URL", url)
    first = start_daemon(outbound_config, tmp_path / "first.log", FAST)
    try:
        first.wait_ready()
        postgres.restart()
        deadline = time.monotonic() + 30
        while not daemon_running(url):
            assert time.monotonic() < deadline, "the lock was not taken back in 30 s\n" + (
                first.output()
            )
            time.sleep(0.5)
        second = start_daemon(outbound_config, tmp_path / "second.log", FAST)
        try:
            assert second.process.wait(60) == 2, second.output()
            assert "already running" in second.output()
        finally:
            second.close()
        assert first.process.poll() is None, first.output()
        assert first.stop()[0] == 0
    finally:
        first.close()


@pytest.mark.postgres
def test_the_daemon_waits_for_postgresql_at_start_then_becomes_ready(
    outbound_config: Path, postgres: Postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The machine just booted and PostgreSQL is not up yet: wait, as for a mail server."""
    monkeypatch.setenv("OUTREACH_STORAGE__URL", postgres.create_database())
    postgres.halt()
    try:
        daemon = start_daemon(outbound_config, tmp_path / "daemon.log", FAST)
        try:
            daemon.wait_until(
                "waiting for the database",
                lambda: any("waiting for the database" in s for s in daemon.notify.statuses()),
            )
            assert daemon.process.poll() is None, daemon.output()
        finally:
            postgres.start()
        daemon.wait_ready(60)
        assert "Traceback" not in daemon.output()
        assert daemon.stop()[0] == 0
    finally:
        if daemon.process.poll() is None:
            daemon.close()


def test_a_database_that_never_answers_ends_in_exit_1_for_systemd_to_retry(
    outbound_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.mailstack import free_port

    monkeypatch.setenv(
        "OUTREACH_STORAGE__URL", f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/x"
    )
    daemon = start_daemon(
        outbound_config,
        tmp_path / "daemon.log",
        {**FAST, "OUTREACH_DAEMON__STARTUP_TIMEOUT_SECONDS": "3"},
    )
    try:
        assert daemon.process.wait(60) == 1, daemon.output()
        assert "the database still unreachable after 3 s" in daemon.output()
        assert "Traceback" not in daemon.output()
    finally:
        daemon.close()
