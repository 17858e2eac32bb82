"""SIGKILL during send-due, over and over: every due step arrives once or is marked unknown,
on SQLite and PostgreSQL, on one SMTP connection and on several."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from outreach.config import load_config
from outreach.services.outbox import list_outbox
from outreach.store.database import open_store
from tests.daemon_harness import ledger_states
from tests.mailstack import SmtpServer

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

CONTACTS = 60
RUNS = 12
MOST_PER_RUN = 10  # sends before a kill, at most: the kills spread over about RUNS runs
DELAY = 0.02  # seconds the server waits between taking a message and answering
REACH_TIMEOUT = 60.0  # seconds for a run to start and make its k sends; generous, for busy CI


def pending_steps(config: Path) -> int:
    """Steps a send-due run would still send: no ledger row, or one not yet handed to SMTP
    (a row left ``sending`` by a kill becomes ``unknown`` at the next run, never resent)."""
    handed = {"sent", "unknown", "sending"}
    return CONTACTS - sum(1 for state in ledger_states(config).values() if state in handed)


def wait_for_sink(
    child: subprocess.Popen[bytes], smtp_sink: SmtpServer, target: int, log: Path
) -> None:
    """Return as soon as the sink holds ``target`` messages; fail if ``child`` exits first
    or the sink takes over REACH_TIMEOUT seconds to get there."""
    deadline = time.monotonic() + REACH_TIMEOUT
    while len(smtp_sink.received) < target:
        if child.poll() is not None:
            pytest.fail(
                f"send-due exited ({child.returncode}) with the sink at "
                f"{len(smtp_sink.received)} of the {target} messages it was to be killed at:\n"
                + log.read_text(errors="replace")
            )
        if time.monotonic() > deadline:
            child.kill()
            child.wait()
            pytest.fail(
                f"the sink reached {len(smtp_sink.received)} of {target} messages in "
                f"{REACH_TIMEOUT:.0f} s; send-due was killed without proving anything:\n"
                + log.read_text(errors="replace")
            )
        time.sleep(0.001)  # a tight loop, but the server's thread gets the GIL


@pytest.mark.parametrize(
    ("database", "connections"),
    [
        ("sqlite", 1),
        ("sqlite", 4),
        pytest.param("postgres", 4, marks=pytest.mark.postgres),
    ],
)
def test_sigkill_never_sends_twice(
    outbound_config: Path,
    smtp_sink: SmtpServer,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    database: str,
    connections: int,
) -> None:
    if database == "postgres":
        postgres = request.getfixturevalue("postgres")
        monkeypatch.setenv("OUTREACH_STORAGE__URL", postgres.create_database())
    monkeypatch.setenv("OUTREACH_SMTP__CONNECTIONS", str(connections))
    rows = "".join(f"p{i}@org{i}.example.com,P{i},Q{i},psychiatrist\n" for i in range(CONTACTS))
    contacts = tmp_path / "many.csv"
    contacts.write_text("email,first_name,last_name,segment\n" + rows)
    env = dict(os.environ)
    command = [sys.executable, "-m", "outreach", "--config", str(outbound_config)]
    subprocess.run(
        [*command, "contacts", "import", str(contacts)], env=env, check=True, capture_output=True
    )
    send = [*command, "send-due", "--once", "--now", "2027-03-01T10:00"]  # after the import
    # A server that takes 20 ms per message, so a kill can land between the server taking a
    # message and answering, as well as between messages.
    smtp_sink.handler.delay = DELAY
    rng = random.Random(20261127)  # noqa: S311  (test inputs, not secrets)
    mid_batch = 0  # kills that landed after some of a run's sends and before its last
    kills: list[tuple[int, int, int]] = []  # (steps pending, k, messages the run got out)
    for run in range(RUNS):
        pending = pending_steps(outbound_config)
        # A kill after k sends, plus one more in flight on each connection, must leave one
        # unsent.
        if pending < connections + 2:
            break
        # Kill once the sink has k more messages than before this run, k in
        # 1..pending-connections-1; then up to 1.5 server delays more, so the kill lands at
        # any point of a message's exchange, never after the run's last message.
        k = rng.randint(1, min(pending - connections - 1, MOST_PER_RUN))
        before = len(smtp_sink.received)
        log = tmp_path / f"send-due{run}.log"
        with log.open("wb") as out:
            child = subprocess.Popen(send, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_sink(child, smtp_sink, before + k, log)
            time.sleep(rng.uniform(0, 1.5 * DELAY))
            child.send_signal(signal.SIGKILL)
        finally:
            if child.poll() is None:
                child.kill()
            child.wait()
        got_out = len(smtp_sink.received) - before
        kills.append((pending, k, got_out))
        if 0 < got_out < pending:
            mid_batch += 1
    final = subprocess.run(send, env=env, capture_output=True, text=True, check=False)
    assert final.returncode == 0, final.stdout + final.stderr
    # After message k arrives the server holds it DELAY before answering, and the kill comes
    # within 1.5 DELAY: at most one more message arrives on each connection, so every run
    # ends mid-batch.
    assert kills, "no run was killed; the test proved nothing"
    assert mid_batch == len(kills), f"a kill missed the batch (pending, k, got out): {kills}"

    assert_sent_once_or_unknown(outbound_config, smtp_sink)


def assert_sent_once_or_unknown(config: Path, smtp_sink: SmtpServer) -> None:
    """Every step reached the server at most once; the ledger says sent (received once) or
    unknown."""
    store = open_store(load_config(config).database_url)
    try:
        ledger = {e.email: e for e in list_outbox(store)}
    finally:
        store.close()
    received = Counter(env_.rcpt_tos[0] for env_ in smtp_sink.received)
    assert max(received.values()) == 1, "a step was sent twice"
    for i in range(CONTACTS):
        email = f"p{i}@org{i}.example.com"
        entry = ledger[email]
        assert entry.state in ("sent", "unknown"), (email, entry.state)
        if entry.state == "sent":
            assert received[email] == 1, email
