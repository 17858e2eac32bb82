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
from outreach.mail.abc import MessageHandler, SyncReport

log = logging.getLogger("outreach.maildir")  # pinned: journal lines show it


class MaildirInbox:
    """The ``InboxSource`` of a Maildir folder holding the practice's inbox."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.folder = f"maildir:{path.name}"
        self._seen: set[str] = set()

    @property
    def description(self) -> str:
        return str(self.path)

    @property
    def location(self) -> str:
        return self.description

    def sync_once(
        self, handler: MessageHandler, *, now: Callable[[], datetime] | None = None
    ) -> SyncReport:
        """Read every message not read yet, oldest delivery first."""
        at = (now or _utc_now)()
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
            report.results.append(handler.handle(raw, folder=self.folder, now=at))
            self._seen.add(key)
        report.folders[self.folder] = len(keys)
        return report

    def watch(
        self,
        handler: MessageHandler,
        *,
        stop: threading.Event,
        poll_seconds: float = 60.0,
        on_pass: Callable[[SyncReport], None] | None = None,
        heartbeat: Callable[[], None] | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        """Read the Maildir every ``poll_seconds`` until ``stop`` is set."""
        clock = now or _utc_now
        while not stop.is_set():
            try:
                report = self.sync_once(handler, now=clock)
                if on_pass is not None:
                    on_pass(report)
            except Exception:  # the watcher must outlive any one bad pass; the next one retries
                log.exception(
                    "inbox: reading %s failed; trying again in %.0f s", self.path, poll_seconds
                )
            waited = 0.0
            while not stop.is_set() and waited < poll_seconds:
                stop.wait(1)
                waited += 1
                if heartbeat is not None:
                    heartbeat()


def _utc_now() -> datetime:
    return datetime.now(UTC)
