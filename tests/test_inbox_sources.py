"""One suite for every ``InboxSource`` (IMAP on a real Dovecot, a real Maildir): what the
daemon and the inbound processor rely on, whichever source the configuration picks."""

from __future__ import annotations

import mailbox
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes
from pathlib import Path

import pytest

from outreach.config import load_config
from outreach.mail.abc import InboxSource, SyncReport, Watermark
from outreach.mail.imap_inbox import ImapInbox
from outreach.mail.maildir import MaildirInbox
from tests.mailstack import Dovecot

NOW = datetime(2027, 3, 1, 15, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Handled:
    message_key: str
    kind: str = "reply"
    contact: str | None = None
    effect: str = "recorded"
    move_to: str | None = None


class Recorder:
    """A ``MessageHandler`` that keeps what it was handed, and watermarks as the real one does
    (saved with each message)."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.marks: dict[str, Watermark] = {}

    def handle(
        self, raw: bytes, *, folder: str, now: datetime, watermark: Watermark | None = None
    ) -> Handled:
        key = str(message_from_bytes(raw)["Message-ID"])
        self.keys.append(key)
        if watermark is not None:
            self.marks[folder] = watermark
        return Handled(key)

    def watermark(self, folder: str) -> Watermark | None:
        return self.marks.get(folder)

    def advance(self, watermark: Watermark, now: datetime) -> None:
        self.marks[watermark.folder] = watermark


@dataclass
class Inbox:
    source: InboxSource
    deliver: Callable[[bytes], None]


def message(n: int) -> bytes:
    return (
        f"From: alma@nb.example.com\r\nTo: maya@calmharbor.example.com\r\n"
        f"Subject: Re: hello {n}\r\nMessage-ID: <m{n}@nb.example.com>\r\n\r\nYes.\r\n"
    ).encode()


@pytest.fixture(params=["imap", "maildir"])
def inbox(
    request: pytest.FixtureRequest, outbound_config: Path, dovecot: Dovecot, tmp_path: Path
) -> Inbox:
    if request.param == "imap":
        user, _password = dovecot.user(3)  # outbound_config's mailbox, emptied for this test
        source: InboxSource = ImapInbox(load_config(outbound_config).imap)
        return Inbox(source, lambda raw: dovecot.deliver(user, raw))
    box = mailbox.Maildir(tmp_path / "inbox", create=True)

    def add(raw: bytes) -> None:
        box.add(raw)

    return Inbox(MaildirInbox(tmp_path / "inbox"), add)


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


class TestEveryInboxSource:
    def test_each_new_message_is_handed_over_once(self, inbox: Inbox) -> None:
        recorder = Recorder()
        inbox.deliver(message(1))
        inbox.deliver(message(2))
        first = inbox.source.sync_once(recorder, now=lambda: NOW)
        assert recorder.keys == ["<m1@nb.example.com>", "<m2@nb.example.com>"]
        assert [r.message_key for r in first.results] == recorder.keys
        assert sum(first.folders.values()) == 2
        again = inbox.source.sync_once(recorder, now=lambda: NOW)
        assert again.results == [] and len(recorder.keys) == 2

    def test_watch_sees_new_mail_beats_while_waiting_and_stops_when_asked(
        self, inbox: Inbox
    ) -> None:
        recorder = Recorder()
        stop = threading.Event()
        beats: list[float] = []
        passes: list[SyncReport] = []
        thread = threading.Thread(
            target=lambda: inbox.source.watch(
                recorder,
                stop=stop,
                poll_seconds=1,
                on_pass=passes.append,
                heartbeat=lambda: beats.append(time.monotonic()),
            ),
            daemon=True,
        )
        thread.start()
        try:
            assert wait_for(lambda: len(passes) >= 1, 10), "no first catch-up pass"
            inbox.deliver(message(3))
            assert wait_for(lambda: recorder.keys == ["<m3@nb.example.com>"], 10)
            assert wait_for(lambda: len(beats) >= 2, 5), "no heartbeat while waiting"
        finally:
            stop.set()
            thread.join(timeout=5)
        assert not thread.is_alive(), "the source did not stop within 5 s of being asked"

    def test_it_says_what_it_watches(self, inbox: Inbox) -> None:
        assert inbox.source.description
        assert inbox.source.description in inbox.source.location
