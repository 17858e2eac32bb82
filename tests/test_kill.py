"""SIGKILL during send-due, over and over: every due step arrives once or is marked unknown."""

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
from tests.mailstack import SmtpServer

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

CONTACTS = 60
RUNS = 12


def test_sigkill_never_sends_twice(
    outbound_config: Path, smtp_sink: SmtpServer, tmp_path: Path
) -> None:
    rows = "".join(f"p{i}@org{i}.example.com,P{i},Q{i},psychiatrist\n" for i in range(CONTACTS))
    contacts = tmp_path / "many.csv"
    contacts.write_text("email,first_name,last_name,segment\n" + rows)
    env = dict(os.environ)
    command = [sys.executable, "-m", "outreach", "--config", str(outbound_config)]
    subprocess.run(
        [*command, "contacts", "import", str(contacts)], env=env, check=True, capture_output=True
    )
    send = [*command, "send-due", "--once", "--now", "2027-03-01T10:00"]  # after the import
    # A server that takes 20 ms per message: a batch lasts over a second, so kills land
    # inside it, including between the server taking a message and answering.
    smtp_sink.handler.delay = 0.02
    rng = random.Random(20261127)  # noqa: S311  (timing, not secrets)
    mid_batch = 0  # kills that landed after some of a run's sends and before its last
    for _ in range(RUNS):
        before = len(smtp_sink.received)
        child = subprocess.Popen(
            send, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.5, 2.5))
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            if before < len(smtp_sink.received) < CONTACTS:
                mid_batch += 1
        child.wait()
        if len(smtp_sink.received) >= CONTACTS:
            break
    final = subprocess.run(send, env=env, capture_output=True, text=True, check=False)
    assert final.returncode == 0, final.stdout + final.stderr
    assert mid_batch > 0, "no run was killed mid-batch; the test proved nothing"

    settings = load_config(outbound_config)
    store = open_store(settings.database_url)
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
