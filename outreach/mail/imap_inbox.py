"""Reading the practice's IMAP folders: one catch-up pass over every new message.

Read-only: folders are selected with EXAMINE (``readonly=True``) and fetched with
``BODY.PEEK[]``, so no flag changes and nothing moves (RFC 3501 6.3.2, 6.4.5). Each
folder's (UIDVALIDITY, last UID) is saved with each message's effects; when UIDVALIDITY
changes the folder is read again from the start and the Message-ID dedupe keeps every
effect single. ``UID n:*`` always returns the highest UID even when it is below n
(RFC 3501 6.4.8), so the result is filtered. Bodies are fetched in groups of at most
``FETCH_BYTES`` by their RFC822.SIZE (a larger message alone), so memory follows the largest
message rather than the batch.

IMAPClient is blocking; the daemon runs this in a worker thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from outreach.config import Imap
from outreach.errors import MailServerUnusable, SignInNeeded
from outreach.mail.abc import MessageHandler, SyncReport, Watermark
from outreach.mail.imap import close_imap, open_imap
from outreach.signin.tokens import AccessTokens

log = logging.getLogger("outreach.watcher")  # pinned: journal lines show it
FETCH_BATCH = 200  # messages whose sizes are asked at once
FETCH_BYTES = 4 * 1024 * 1024  # bodies fetched at once, in all; a larger message comes alone
IDLE_RENEW_SECONDS = 9 * 60  # RFC 2177 allows 29 minutes; NAT boxes drop quiet links sooner
MAX_BACKOFF_SECONDS = 300.0
# Waiting for ``outreach auth login``: look again this often (reading a file, not the network).
SIGN_IN_RECHECK_SECONDS = 20.0


class ImapInbox:
    """The ``InboxSource`` of the practice's IMAP folders."""

    def __init__(self, imap: Imap, tokens: AccessTokens | None = None) -> None:
        self.settings = imap
        self.tokens = tokens

    @property
    def description(self) -> str:
        return ", ".join(self.settings.folders)

    @property
    def location(self) -> str:
        return f"{self.description} on {self.settings.host}"

    def sync_once(
        self, handler: MessageHandler, *, now: Callable[[], datetime] | None = None
    ) -> SyncReport:
        """Read every message that arrived since the last pass, in every watched folder."""
        imap = self.settings
        client = open_imap(imap, self.tokens)
        try:
            return _sync_all(client, imap, handler, now or (lambda: datetime.now(UTC)))
        finally:
            close_imap(client)

    def watch(
        self,
        handler: MessageHandler,
        *,
        stop: threading.Event,
        poll_seconds: float = 60.0,
        on_pass: Callable[[SyncReport], None] | None = None,
        heartbeat: Callable[[], None] | None = None,
        now: Callable[[], datetime] | None = None,
        idle_seconds: float = IDLE_RENEW_SECONDS,
    ) -> None:
        """Catch up, then wait for new mail with IDLE (RFC 2177), or poll where the server lacks
        it, until ``stop`` is set. A lost connection or a server restart is retried with capped
        exponential backoff; every reconnect starts with a catch-up, so nothing is missed.

        IDLE watches the first folder; the others are read after each wake-up, and at least
        every ``poll_seconds``.
        ``heartbeat`` is called at least once a second while the watcher waits, and after each
        message it reads; a watcher stuck in one call stops calling it, and so does one that
        spins. A connection the server closed, with or without BYE, is noticed within a second.
        """
        imap = self.settings
        clock = now or (lambda: datetime.now(UTC))
        backoff = _Backoff(stop, heartbeat)
        while not stop.is_set():
            try:
                client = open_imap(imap, self.tokens)
            except SignInNeeded as exc:
                backoff.wait_for_sign_in(exc)
                continue
            except (MailServerUnusable, IMAPClientError, OSError) as exc:
                backoff.wait("inbox: can't connect (%s); retrying in %.0f s", exc)
                continue
            try:
                idle = b"IDLE" in client.capabilities()
                while not stop.is_set():
                    report = _sync_all(client, imap, handler, clock, heartbeat)
                    backoff.reset()
                    if on_pass is not None:
                        on_pass(report)
                    if idle:
                        # IDLE watches one folder; with more, wake up to read the others too.
                        wait = (
                            idle_seconds
                            if len(imap.folders) == 1
                            else min(idle_seconds, poll_seconds)
                        )
                        _idle(client, imap.folders[0], handler, stop, wait, heartbeat)
                    else:
                        _wait(stop, poll_seconds, heartbeat)
            except (IMAPClientError, OSError) as exc:
                backoff.wait("inbox: connection lost (%s); reconnecting in %.0f s", exc)
            except Exception:  # the watcher must outlive any one bad pass; the next one retries
                backoff.wait("inbox: unexpected error; retrying in %.0f s", exc_info=True)
            finally:
                close_imap(client)


def _sync_all(
    client: IMAPClient,
    imap: Imap,
    handler: MessageHandler,
    clock: Callable[[], datetime],
    heartbeat: Callable[[], None] | None = None,
) -> SyncReport:
    report = SyncReport()
    for folder in imap.folders:
        report.folders[folder] = _sync_folder(client, folder, handler, clock, report, heartbeat)
    return report


class _Backoff:
    """Capped exponential waits between reconnects, each announced in the log."""

    def __init__(self, stop: threading.Event, heartbeat: Callable[[], None] | None) -> None:
        self.stop, self.heartbeat = stop, heartbeat
        self.seconds = 1.0
        self.signing_in = False

    def wait(self, message: str, *args: object, exc_info: bool = False) -> None:
        if exc_info:
            log.exception(message, *args, self.seconds)
        else:
            log.warning(message, *args, self.seconds)
        _wait(self.stop, self.seconds, self.heartbeat)
        self.seconds = min(self.seconds * 2, MAX_BACKOFF_SECONDS)

    def wait_for_sign_in(self, exc: SignInNeeded) -> None:
        """Wait for a new sign-in: said once, then checked every few seconds, quietly."""
        if not self.signing_in:
            log.warning("inbox: waiting: %s", exc)
            self.signing_in = True
        _wait(self.stop, SIGN_IN_RECHECK_SECONDS, self.heartbeat)

    def reset(self) -> None:
        self.seconds = 1.0
        if self.signing_in:
            log.info("inbox: signed in again; watching")
            self.signing_in = False


def _idle(
    client: IMAPClient,
    folder: str,
    handler: MessageHandler,
    stop: threading.Event,
    seconds: float,
    heartbeat: Callable[[], None] | None,
) -> None:
    """Wait in IDLE until the folder changes, ``stop`` is set, or it is time to renew."""
    selected = client.select_folder(folder, readonly=True)
    mark = handler.watermark(folder)
    last = mark.uid if mark else 0
    if int(selected.get(b"UIDNEXT", 0)) - 1 > last:
        return  # mail arrived between the catch-up and now: IDLE would not announce it
    client.idle()
    try:
        deadline = time.monotonic() + seconds
        while not stop.is_set() and time.monotonic() < deadline:
            asked = time.monotonic()
            responses = client.idle_check(timeout=1)
            if not responses and time.monotonic() - asked < 0.5:
                # Nothing, at once: imapclient's answer once the server closed the connection
                # (EOF). A crashed or restarted server, or a NAT box, closes IDLE without the
                # BYE of RFC 3501 7.1.5; on a live link, idle_check waits out its timeout.
                # Ending IDLE below asks the server: gone, it raises and watch() reconnects.
                return
            if any(r and r[0] == b"BYE" for r in responses):
                return  # the server is closing the connection (RFC 3501 7.1.5)
            if heartbeat is not None:
                heartbeat()  # only after a real wait: a loop that spins must not look alive
            if any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses):
                return
    finally:
        client.idle_done()


def _wait(stop: threading.Event, seconds: float, heartbeat: Callable[[], None] | None) -> None:
    deadline = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < deadline:
        stop.wait(1)
        if heartbeat is not None:
            heartbeat()


def _sync_folder(
    client: IMAPClient,
    folder: str,
    handler: MessageHandler,
    clock: Callable[[], datetime],
    report: SyncReport,
    heartbeat: Callable[[], None] | None = None,
) -> int:
    selected = client.select_folder(folder, readonly=True)
    uidvalidity = int(selected[b"UIDVALIDITY"])
    mark = handler.watermark(folder)
    last = mark.uid if mark and mark.uidvalidity == uidvalidity else 0
    uids = sorted(u for u in client.search(["UID", f"{last + 1}:*"]) if u > last)
    moves: dict[str, list[int]] = {}
    for group in _fetch_groups(client, uids):
        fetched = client.fetch(group, ["BODY.PEEK[]"])
        for uid in group:
            raw = fetched.pop(uid, {}).get(b"BODY[]")
            if not isinstance(raw, bytes):
                log.warning("%s UID %s: no body returned; skipped", folder, uid)
                continue
            result = handler.handle(
                raw, folder=folder, now=clock(), watermark=Watermark(folder, uidvalidity, uid)
            )
            del raw  # not held while the next group is fetched: one large message at a time
            report.results.append(result)
            if heartbeat is not None:
                heartbeat()
            if result.move_to:
                moves.setdefault(result.move_to, []).append(uid)
    # Every UID below UIDNEXT was either read above or no longer exists: past them all.
    highest = int(selected.get(b"UIDNEXT", 0)) - 1
    if highest > max([last, *uids]):
        handler.advance(Watermark(folder, uidvalidity, highest), clock())
    if moves:
        _move(client, folder, moves)
    return len(uids)


def _fetch_groups(client: IMAPClient, uids: list[int]) -> Iterator[list[int]]:
    """``uids``, in order, in groups whose RFC822.SIZEs (RFC 3501 6.4.5) add up to at most
    ``FETCH_BYTES``; a message larger than that is a group of its own."""
    for start in range(0, len(uids), FETCH_BATCH):
        batch = uids[start : start + FETCH_BATCH]
        sizes = client.fetch(batch, ["RFC822.SIZE"])
        group: list[int] = []
        total = 0
        for uid in batch:
            size = int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0))
            if group and total + size > FETCH_BYTES:
                yield group
                group, total = [], 0
            group.append(uid)
            total += size
        yield group


def _move(client: IMAPClient, folder: str, moves: dict[str, list[int]]) -> None:
    """File messages as rules ask: the only time the watcher writes to the mailbox."""
    client.select_folder(folder, readonly=False)
    try:
        for target, uids in moves.items():
            try:
                client.move(uids, target)
            except IMAPClientError as exc:
                log.error("inbox: can't move %d message(s) to %r: %s", len(uids), target, exc)
    finally:
        client.select_folder(folder, readonly=True)
