"""The IMAP Sent folder: filing copies of sent messages, and finding one by its Message-ID.

Plain SMTP servers don't file what they send, so with ``[imap] save_sent`` outreach APPENDs
each sent message itself. After a crash those copies tell whether a message left.
IMAPClient is blocking: callers run these in a worker thread.
"""

from __future__ import annotations

from datetime import datetime

from outreach.config import Imap
from outreach.mail.imap import close_imap, open_imap


class SentFolder:
    """One short IMAP session per call: these are rare, and a long one would go stale."""

    def __init__(self, imap: Imap) -> None:
        self.settings = imap

    def append(self, data: bytes, when: datetime) -> None:
        """File a copy of a sent message, marked as read."""
        client = open_imap(self.settings)
        try:
            client.append(self.settings.sent_folder, data, flags=[b"\\Seen"], msg_time=when)
        finally:
            close_imap(client)

    def contains(self, message_id: str) -> bool:
        """Whether the Sent folder holds a message with this Message-ID."""
        client = open_imap(self.settings)
        try:
            client.select_folder(self.settings.sent_folder, readonly=True)
            return bool(client.search(["HEADER", "Message-ID", message_id]))
        finally:
            close_imap(client)
