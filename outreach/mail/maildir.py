"""An inbox in a local Maildir: mail delivered on this machine (by its own MTA, or by
``outreach demo``'s embedded server) instead of fetched over IMAP.

Read-only like the IMAP watcher: nothing is moved from ``new/`` to ``cur/`` and no flag is
set. Messages are read once per process (by file name); after a restart each is read again
and the inbound Message-ID dedupe gives it no second effect.
"""

from __future__ import annotations

import logging
import mailbox
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from outreach.errors import ConfigError
from outreach.mail.imap_inbox import SyncReport
from outreach.services.inbound import InboundProcessor

log = logging.getLogger("outreach.maildir")  # pinned: journal lines show it


class MaildirInbox:
    """The practice's inbox as a Maildir folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.folder = f"maildir:{path.name}"
        self._seen: set[str] = set()

    def sync_once(self, processor: InboundProcessor, *, now: datetime) -> SyncReport:
        """Read every message not read yet, oldest delivery first."""
        try:
            box = mailbox.Maildir(self.path, factory=None, create=False)
            keys = sorted(k for k in box.iterkeys() if k not in self._seen)
        except (mailbox.NoSuchMailboxError, OSError) as exc:
            raise ConfigError([f"inbound.maildir: can't read {self.path} ({exc})"]) from None
        report = SyncReport()
        for key in keys:
            try:
                raw = box.get_bytes(key)
            except (KeyError, OSError):
                continue  # removed by someone else meanwhile
            report.results.append(processor.process(raw, folder=self.folder, now=now))
            self._seen.add(key)
        report.folders[self.folder] = len(keys)
        return report


def watch_maildir(
    inbox: MaildirInbox,
    processor: InboundProcessor,
    *,
    stop: threading.Event,
    poll_seconds: float = 60.0,
    on_pass: Callable[[SyncReport], None] | None = None,
    heartbeat: Callable[[], None] | None = None,
    now: Callable[[], datetime] | None = None,
) -> None:
    """Read the Maildir every ``poll_seconds`` until ``stop`` is set."""
    clock = now or (lambda: datetime.now(UTC))
    while not stop.is_set():
        try:
            report = inbox.sync_once(processor, now=clock())
            if on_pass is not None:
                on_pass(report)
        except Exception:  # the watcher must outlive any one bad pass; the next one retries
            log.exception(
                "inbox: reading %s failed; trying again in %.0f s", inbox.path, poll_seconds
            )
        waited = 0.0
        while not stop.is_set() and waited < poll_seconds:
            stop.wait(1)
            waited += 1
            if heartbeat is not None:
                heartbeat()
