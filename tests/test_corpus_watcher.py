"""Every message of the classification corpus through the real watcher on Dovecot: each is
read and recorded once, none breaks the watcher or is unprocessable, and no line of any
message's body reaches the log or the store."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient
from sqlalchemy import select

from outreach.store.models import InboundEventRow
from tests.corpus_manifest import entries
from tests.mailstack import Dovecot, SmtpServer
from tests.test_inbound import Practice

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture
def practice(outbound_config: Path, dovecot: Dovecot, smtp_sink: SmtpServer) -> Iterator[Practice]:
    p = Practice(outbound_config, dovecot)
    yield p
    p.store.close()


def body_lines(raw: bytes) -> set[str]:
    """Distinctive lines of a message's body as written (long enough not to be a word
    outreach itself says)."""
    _, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    lines = set()
    for written in body.decode("utf-8", "replace").splitlines():
        line = written.strip().lstrip(">").strip()
        # Not base64 or rules, and not a bare address (a bounce's recipient is stored).
        if len(line) >= 40 and not re.fullmatch(r"[A-Za-z0-9+/=]+|[-=_*]+|<?\S+@\S+>?:?", line):
            lines.add(line)
    return lines


def test_the_whole_corpus_through_the_watcher(
    practice: Practice, caplog: pytest.LogCaptureFixture
) -> None:
    corpus = [e.file.read_bytes() for e in entries()]
    user, password = practice.dovecot.user(3)
    with IMAPClient("127.0.0.1", port=practice.dovecot.imap_port, ssl=False) as imap:
        imap.login(user, password)
        for start in range(0, len(corpus), 200):
            imap.multiappend("INBOX", corpus[start : start + 200])
    with caplog.at_level(logging.DEBUG):
        results = practice.sync()
    assert len(results) == len(corpus)
    assert not [effect for _, effect in results if effect.startswith("unprocessable")]
    assert practice.sync() == []  # all read, the watermark past them

    with practice.store.session() as session:
        stored = "\n".join(
            json.dumps(row.detail, ensure_ascii=False) + row.effect
            for row in session.scalars(select(InboundEventRow))
        )
    logged = caplog.text
    new = [effect for _, effect in results if not effect.startswith("seen before")]
    assert logged.count("inbound ") >= len(new)  # each message said in the log, by its key
    leaked = [
        line for raw in corpus for line in body_lines(raw) if line in logged or line in stored
    ]
    assert leaked == []
