"""Reading the practice's IMAP folders: one catch-up pass over every new message.

Read-only: folders are selected with EXAMINE (``readonly=True``) and fetched with
``BODY.PEEK[]``, so no flag changes and nothing moves (RFC 3501 6.3.2, 6.4.5). Each
folder's (UIDVALIDITY, last UID) is saved with each message's effects; when UIDVALIDITY
changes the folder is read again from the start and the Message-ID dedupe keeps every
effect single. ``UID n:*`` always returns the highest UID even when it is below n
(RFC 3501 6.4.8), so the result is filtered.

IMAPClient is blocking; the daemon runs this in a worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from imapclient import IMAPClient

from outreach.config import Imap
from outreach.inbound import InboundProcessor, InboundResult, Watermark
from outreach.models import MailboxStateRow
from outreach.sent_folder import close_imap, open_imap

log = logging.getLogger(__name__)
FETCH_BATCH = 200


@dataclass
class SyncReport:
    """What one catch-up pass saw."""

    results: list[InboundResult] = field(default_factory=list)
    folders: dict[str, int] = field(default_factory=dict)  # folder -> messages read


def sync_once(
    imap: Imap, processor: InboundProcessor, *, now: Callable[[], datetime] | None = None
) -> SyncReport:
    """Read every message that arrived since the last pass, in every watched folder."""
    clock = now or (lambda: datetime.now(UTC))
    report = SyncReport()
    client = open_imap(imap)
    try:
        for folder in imap.folders:
            report.folders[folder] = _sync_folder(client, folder, processor, clock, report)
    finally:
        close_imap(client)
    return report


def _sync_folder(
    client: IMAPClient,
    folder: str,
    processor: InboundProcessor,
    clock: Callable[[], datetime],
    report: SyncReport,
) -> int:
    selected = client.select_folder(folder, readonly=True)
    uidvalidity = int(selected[b"UIDVALIDITY"])
    with processor.store.session() as session:
        state = session.get(MailboxStateRow, folder)
        last = state.last_uid if state and state.uidvalidity == uidvalidity else 0
    uids = sorted(u for u in client.search(["UID", f"{last + 1}:*"]) if u > last)
    for start in range(0, len(uids), FETCH_BATCH):
        batch = uids[start : start + FETCH_BATCH]
        fetched = client.fetch(batch, ["BODY.PEEK[]"])
        for uid in batch:
            raw = fetched.get(uid, {}).get(b"BODY[]")
            if not isinstance(raw, bytes):
                log.warning("%s UID %s: no body returned; skipped", folder, uid)
                continue
            result = processor.process(
                raw, folder=folder, now=clock(), watermark=Watermark(folder, uidvalidity, uid)
            )
            report.results.append(result)
    return len(uids)
