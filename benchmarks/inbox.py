"""Benchmarks for the inbox, on a real Dovecot started here (needs scripts/install-system-deps).

1. Reply-to-stage latency with IDLE: a reply is delivered over LMTP; the clock stops when the
   contact's stage reads ``replied`` in the store. Baseline, same run: a bare IMAPClient in
   IDLE, clock stopped at Dovecot's EXISTS announcement (the floor for any watcher).
2. Catch-up on waiting messages: ``ImapInbox.sync_once`` (fetch, classify, match, record with the
   watermark) in messages per second, next to a raw IMAPClient fetch of ``BODY.PEEK[]`` in
   batches of 200 parsed with ``email.message_from_bytes``.

Usage: python benchmarks/inbox.py [REPLIES] [WAITING]
"""

from __future__ import annotations

import email
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from imapclient import IMAPClient
from sqlalchemy import insert

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from outreach.config import load_config  # noqa: E402
from outreach.mail.imap_inbox import ImapInbox  # noqa: E402
from outreach.runtime.parts import build_parts  # noqa: E402
from outreach.services.contacts import import_contacts, show_contact  # noqa: E402
from outreach.store.database import open_store  # noqa: E402
from outreach.store.models import OutboxRow  # noqa: E402
from tests.mailstack import start_dovecot  # noqa: E402

NOW = datetime.now(UTC)


def reply(n: int, refers_to: str) -> bytes:
    return (
        f"From: p{n}@org{n}.example.com\r\nTo: maya@calmharbor.example.com\r\n"
        f"Subject: Re: Hello\r\nMessage-ID: <reply{n}-{time.time_ns()}@bench>\r\n"
        f"In-Reply-To: {refers_to}\r\n\r\nYes, let's talk.\r\n"
    ).encode()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    replies = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    waiting = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    dovecot = start_dovecot()
    work = Path(tempfile.mkdtemp(prefix="outreach-inbox-bench-"))
    try:
        user, password = dovecot.user(5)
        config = work / "config" / "outreach.toml"
        config.parent.mkdir(parents=True)
        text = (ROOT / "config" / "outreach.example.toml").read_text().split("\n[[rules]]")[0]
        config.write_text(text)
        for key, value in {
            "IMAP__HOST": "127.0.0.1",
            "IMAP__PORT": str(dovecot.imap_port),
            "IMAP__SECURITY": "none",
            "IMAP__USERNAME": user,
            "IMAP__PASSWORD": password,
        }.items():
            os.environ[f"OUTREACH_{key}"] = value
        settings = load_config(config)
        store = open_store(settings.database_url)
        rows = "".join(f"p{n}@org{n}.example.com,P{n},psychiatrist\n" for n in range(replies))
        import_contacts(
            store,
            settings.the_pipeline,
            list(settings.segments),
            ("email,first_name,segment\n" + rows).encode(),
            source="b",
            now=NOW,
        )
        with store.engine.begin() as connection:
            for n in range(replies):
                connection.execute(
                    insert(OutboxRow).values(
                        contact_id=n + 1,
                        step_index=0,
                        template="intro",
                        message_id=f"<intro{n}@calmharbor.example.com>",
                        subject="Hello",
                        state="sent",
                        attempts=1,
                        last_error="",
                        created_at=NOW,
                        updated_at=NOW,
                        sent_at=NOW,
                    )
                )
        processor = build_parts(settings, store).processor

        # Baseline: how long Dovecot takes to announce a delivery to an IDLE client.
        raw: list[float] = []
        with IMAPClient("127.0.0.1", port=dovecot.imap_port, ssl=False) as imap:
            imap.login(user, password)
            imap.select_folder("INBOX", readonly=True)
            for n in range(replies):
                imap.idle()
                start = time.perf_counter()
                dovecot.deliver(user, reply(10_000 + n, "<none@x>"))
                while not any(r[1:2] == (b"EXISTS",) for r in imap.idle_check(timeout=5)):
                    pass
                raw.append(time.perf_counter() - start)
                imap.idle_done()
        ImapInbox(settings.imap).sync_once(processor)  # take the baseline's messages out of the way

        stop = threading.Event()
        thread = threading.Thread(
            target=ImapInbox(settings.imap).watch,
            args=(processor,),
            kwargs={"stop": stop},
            daemon=True,
        )
        thread.start()
        time.sleep(1)
        ours: list[float] = []
        for n in range(replies):
            start = time.perf_counter()
            dovecot.deliver(user, reply(n, f"<intro{n}@calmharbor.example.com>"))
            email_address = f"p{n}@org{n}.example.com"
            while show_contact(store, email_address).contact.stage != "replied":
                time.sleep(0.01)
            ours.append(time.perf_counter() - start)
        stop.set()
        thread.join(timeout=15)
        print(f"reply-to-stage latency over {replies} replies (IDLE, Dovecot on loopback)")
        print(
            f"  baseline  Dovecot's IDLE announcement:  p50 {statistics.median(raw):.3f} s, "
            f"p95 {percentile(raw, 0.95):.3f} s"
        )
        print(
            f"  outreach  reply to stage 'replied':     p50 {statistics.median(ours):.3f} s, "
            f"p95 {percentile(ours, 0.95):.3f} s"
        )

        messages = [reply(20_000 + n, "<none@x>") for n in range(waiting)]
        with IMAPClient("127.0.0.1", port=dovecot.imap_port, ssl=False) as imap:
            imap.login(user, password)
            for start_at in range(0, waiting, 500):
                imap.multiappend("INBOX", messages[start_at : start_at + 500])
            imap.select_folder("INBOX", readonly=True)
            begin = time.perf_counter()
            uids = imap.search("ALL")
            for start_at in range(0, len(uids), 200):
                fetched = imap.fetch(uids[start_at : start_at + 200], ["BODY.PEEK[]"])
                for data in fetched.values():
                    email.message_from_bytes(data[b"BODY[]"])
            raw_rate = len(uids) / (time.perf_counter() - begin)
        begin = time.perf_counter()
        report = ImapInbox(settings.imap).sync_once(processor)
        our_rate = len(report.results) / (time.perf_counter() - begin)
        print(f"catch-up on {waiting:,} waiting messages")
        print(f"  baseline  IMAPClient fetch + parse:                {raw_rate:7.0f} msg/s")
        print(f"  outreach  sync (classify, match, record, watermark): {our_rate:7.0f} msg/s")
        store.close()
    finally:
        dovecot.stop()


if __name__ == "__main__":
    main()
