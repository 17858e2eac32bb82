"""The IMAP watcher under the hardening issue's faults, on real servers: a session dropped
without BYE, message bodies in debug logs, and memory that grew with the fetch batch."""

from __future__ import annotations

import base64
import logging
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from imapclient import IMAPClient

from outreach.config import load_config
from outreach.mail.abc import Watermark
from outreach.mail.imap_inbox import ImapInbox
from outreach.runtime.logs import configure_logging
from tests import test_daemon
from tests.mailstack import Dovecot
from tests.test_daemon import Practice
from tests.test_inbound import reply
from tests.test_inbox_sources import Handled

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

practice = test_daemon.practice  # the daemon tests' practice: config, sink, Dovecot, daemons
MB = 1024 * 1024


def imap_sessions(dovecot: Dovecot, user: str) -> list[int]:
    """The pids of the Dovecot ``imap`` processes serving ``user`` (``doveadm who -1``: one
    line per connection, ``username proto pid ip``)."""
    listing = subprocess.run(
        ["doveadm", "-c", str(dovecot.conf), "who", "-1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [line.split() for line in listing.splitlines()[1:]]
    return [int(row[2]) for row in rows if row and row[0] == user]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far, all threads (proc(5): fields 14
    and 15 of /proc/PID/stat, after the parenthesised command name)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def outreach(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "outreach", "--config", str(config), *args]


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


class TestDroppedSession:
    def test_a_session_dropped_without_bye_is_noticed_and_a_reply_seen_within_seconds(
        self, practice: Practice
    ) -> None:
        """SIGKILL of the ``imap`` process serving the daemon's IDLE closes the connection
        without BYE, as a Cyrus restart, a crashed server or a NAT box does. The daemon must
        notice within seconds, reconnect and catch up: a reply delivered right after is
        processed within 30 s, and the daemon doesn't spin meanwhile (under 20% of one core)."""
        dovecot, cli = practice.dovecot, practice.cli
        user, _password = dovecot.user(3)
        practice.import_contacts(1)
        daemon = practice.start({"WATCHDOG_USEC": "2000000"})
        daemon.wait_ready()
        daemon.wait_until("the intro", lambda: len(practice.received) == 1)
        intro = practice.received[0].message
        daemon.wait_until("one IMAP session", lambda: len(imap_sessions(dovecot, user)) == 1)
        time.sleep(2)  # the catch-up is done and the watcher is in IDLE
        pings = daemon.notify.count("WATCHDOG=1")
        cpu_before, dropped = cpu_seconds(daemon.process.pid), time.monotonic()
        for pid in imap_sessions(dovecot, user):
            os.kill(pid, signal.SIGKILL)
        dovecot.deliver(
            user,
            crlf(
                reply(
                    "P0 Q0 <p0@org0.example.com>",
                    str(intro["Message-ID"]),
                    "Yes, let's talk next week.",
                    subject=f"Re: {intro['Subject']}",
                    message_id="<dropped-1@org0.example.com>",
                )
            ),
        )
        seen_after: float | None = None
        while time.monotonic() - dropped < 30 and daemon.process.poll() is None:
            if "replied" in cli("contacts", "show", "p0@org0.example.com").stdout:
                seen_after = time.monotonic() - dropped
                break
            time.sleep(0.2)
        # CPU over at least 10 s after the drop: a watcher spinning after it reconnected shows.
        time.sleep(max(0.0, dropped + 10 - time.monotonic()))
        window = time.monotonic() - dropped
        share = (cpu_seconds(daemon.process.pid) - cpu_before) / window
        figures = f"reply seen after {seen_after} s; daemon CPU {share:.0%} over {window:.1f} s"
        print(figures)
        assert seen_after is not None, figures + "\n" + daemon.output()
        assert share < 0.2, figures
        assert daemon.notify.count("WATCHDOG=1") > pings, "the watchdog pings stopped"
        assert "inbox: connection lost" in daemon.output()
        assert daemon.stop()[0] == 0


class TestDebugLog:
    def test_debug_shows_imap_commands_but_never_a_message_body(
        self, outbound_config: Path, dovecot: Dovecot
    ) -> None:
        user, _password = dovecot.user(3)
        marker = f"body-marker-{uuid.uuid4().hex}"
        dovecot.deliver(
            user,
            crlf(
                reply(
                    "x@unknown.example.net",
                    "<none@x>",
                    f"Something private: {marker}.",
                    message_id="<debug-1@unknown.example.net>",
                )
            ),
        )
        run = subprocess.run(
            outreach(outbound_config, "--log-level", "debug", "inbox", "sync", "--once"),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert "<debug-1@unknown.example.net>" in run.stdout  # the message was read
        assert marker not in run.stderr
        assert marker not in run.stdout
        assert re.search(r"DEBUG imapclient\.\S+: > .*UID FETCH", run.stderr), run.stderr

    def test_the_filter_alone_keeps_message_text_out_of_imaplib_dumps(
        self, dovecot: Dovecot, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A client made without ``open_imap`` keeps imapclient's imaplib debug level 5, which
        logs whole responses: the log filter still lets no body, and no quoted string such
        as an ENVELOPE's subject (RFC 3501 7.4.2), through."""
        user, password = dovecot.user(4)
        dovecot.empty(user)
        body, subject = (f"{what}-marker-{uuid.uuid4().hex}" for what in ("body", "subject"))
        dovecot.deliver(
            user,
            crlf(reply("x@unknown.example.net", "<none@x>", body, subject=f"Re: {subject}")),
        )
        root = logging.getLogger()
        level = root.level
        handler = configure_logging("debug")
        try:
            with IMAPClient("127.0.0.1", port=dovecot.imap_port, ssl=False) as imap:
                imap.login(user, password)
                imap.select_folder("INBOX", readonly=True)
                fetched = imap.fetch(imap.search(["ALL"]), ["BODY.PEEK[]", "ENVELOPE"])
        finally:
            root.removeHandler(handler)
            root.setLevel(level)
        assert any(body.encode() in data[b"BODY[]"] for data in fetched.values())
        logged = capsys.readouterr().err
        assert body not in logged
        assert subject not in logged
        assert re.search(r"DEBUG imapclient\.\S+: > .*FETCH", logged), logged
        assert "read literal size" in logged


def large_message(n: int, size: int) -> bytes:
    """A reply with a base64 attachment, ``size`` bytes in all (give or take a line)."""
    head = crlf(
        f"From: z{n}@unknown.example.net\nTo: maya@calmharbor.example.com\n"
        f"Subject: scans {n}\nMessage-ID: <large-{n}@unknown.example.net>\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="B"\n\n--B\nContent-Type: text/plain\n\n'
        "The scans you asked for.\n--B\nContent-Type: application/pdf\n"
        "Content-Transfer-Encoding: base64\n\n"
    )
    tail = b"\r\n--B--\r\n"
    # encodebytes makes 76-character lines of 57 bytes each, ended by \n (\r\n below).
    lines = (size - len(head) - len(tail)) // 78
    attachment = base64.encodebytes(os.urandom(lines * 57)).replace(b"\n", b"\r\n")
    return head + attachment + tail


# Runs a command and prints its peak resident memory (getrusage(2): ru_maxrss of the waited-for
# children, in KiB on Linux) and exit code. Measured from this small process, not from pytest:
# Linux counts the memory a child replaces at exec in its ru_maxrss, and a child spawned by
# pytest (vfork, then exec) replaces pytest's own, so it would start at pytest's peak.
PEAK_RSS = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
    "print('peak-rss', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)"
)


def peak_rss(command: list[str]) -> tuple[int, str]:
    """Run ``command``; its peak resident memory in bytes, and its output."""
    run = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *command],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    output = run.stdout + run.stderr
    found = re.search(r"^peak-rss (\d+) (-?\d+)$", run.stdout, re.MULTILINE)
    assert found and found[2] == "0", output
    return int(found[1]) * 1024, output


class SizesOnly:
    """A ``MessageHandler`` that keeps nothing of a message but its size, so that a process
    running the source with it measures the source's memory alone."""

    def handle(
        self, raw: bytes, *, folder: str, now: datetime, watermark: Watermark | None = None
    ) -> Handled:
        return Handled(f"{len(raw)} bytes")

    def watermark(self, folder: str) -> Watermark | None:
        return None

    def advance(self, watermark: Watermark, now: datetime) -> None:
        pass


def source_pass(config: str) -> None:
    """One ``ImapInbox.sync_once`` with ``SizesOnly``: what ``source_command`` runs."""
    report = ImapInbox(load_config(Path(config)).imap).sync_once(SizesOnly())
    print(f"read {len(report.results)} message(s)")


def source_command(config: Path) -> list[str]:
    code = (
        "import sys; from tests.test_watcher_hardening import source_pass; source_pass(sys.argv[1])"
    )
    return [sys.executable, "-c", code, str(config)]


@pytest.fixture
def six_large(outbound_config: Path, dovecot: Dovecot) -> Callable[[], int]:
    """Puts six 8 MB messages in the practice's INBOX (emptied by outbound_config) when
    called; returns the largest one's size."""

    def put() -> int:
        user, password = dovecot.user(3)
        messages = [large_message(n, 8 * MB) for n in range(6)]
        with IMAPClient("127.0.0.1", port=dovecot.imap_port, ssl=False) as imap:
            imap.login(user, password)
            for raw in messages:
                imap.append("INBOX", raw)
        return max(len(raw) for raw in messages)

    return put


def describe(peak: int, base: int, largest: int, base_name: str) -> str:
    return (
        f"peak {peak / MB:.0f} MB; {base_name} {base / MB:.0f} MB; largest message "
        f"{largest / MB:.1f} MB; above {base_name}: {(peak - base) / largest:.1f} x the largest"
    )


class TestMemory:
    def test_the_source_peaks_under_three_times_the_largest_message(
        self, outbound_config: Path, six_large: Callable[[], int]
    ) -> None:
        """Six 8 MB messages: a process reading them through ``ImapInbox`` (with a handler
        that keeps only their sizes) peaks under three times the largest message above the
        same process on an empty inbox."""
        command = source_command(outbound_config)
        empty, output = peak_rss(command)
        assert "read 0 message(s)" in output, output
        largest = six_large()
        peak, output = peak_rss(command)
        assert "read 6 message(s)" in output, output
        figures = describe(peak, empty, largest, "empty inbox")
        print(figures)
        assert peak <= empty + 3 * largest, figures

    def test_inbox_sync_memory_follows_the_largest_message_not_the_batch(
        self, outbound_config: Path, dovecot: Dovecot, six_large: Callable[[], int]
    ) -> None:
        """``outreach inbox sync --once`` end to end: six 8 MB messages take no more memory
        than one (within one message's size). The peak includes the handler parsing one
        message (domain/classify), so it is compared with one message, not an empty inbox."""
        command = outreach(outbound_config, "inbox", "sync", "--once")
        dovecot.deliver(dovecot.user(3)[0], large_message(9, 8 * MB))
        one, output = peak_rss(command)
        assert output.count("no contact matches") == 1, output
        largest = six_large()
        peak, output = peak_rss(command)
        assert output.count("no contact matches") == 6, output
        figures = describe(peak, one, largest, "one message")
        print(figures)
        assert peak <= one + largest, figures

    def test_inbox_sync_peaks_under_three_times_the_largest_message(
        self, outbound_config: Path, six_large: Callable[[], int]
    ) -> None:
        """The issue's bound, end to end: fetching, classifying and recording six 8 MB
        messages peaks under three times the largest above the same command on an empty inbox
        (classify reads a message's first megabyte: all that says what it is)."""
        command = outreach(outbound_config, "inbox", "sync", "--once")
        empty, output = peak_rss(command)
        assert "no new messages" in output, output
        largest = six_large()
        peak, output = peak_rss(command)
        assert output.count("no contact matches") == 6, output
        figures = describe(peak, empty, largest, "empty inbox")
        print(figures)
        assert peak <= empty + 3 * largest, figures
