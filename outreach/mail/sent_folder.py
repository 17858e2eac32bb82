r"""The IMAP Sent folder: filing copies of sent messages, and finding one by its Message-ID.

Plain SMTP servers don't file what they send, so with ``[imap] save_sent`` outreach APPENDs
each sent message itself. Gmail and Exchange file what is submitted over SMTP themselves
(``server_saves_sent``): there outreach adds nothing. Either way, after a crash the folder tells
whether a message left. The folder is ``[imap] sent_folder``, else the one the server marks
SPECIAL-USE ``\Sent`` (RFC 6154: "[Gmail]/Sent Mail", "Sent Items", "INBOX.Sent"), else "Sent".
IMAPClient is blocking: callers run these in a worker thread.
"""

from __future__ import annotations

from datetime import datetime

from imapclient import IMAPClient
from imapclient.imapclient import SENT

from outreach.config import Imap
from outreach.mail.imap import close_imap, open_imap
from outreach.signin.tokens import AccessTokens

DEFAULT_SENT = "Sent"


class SentFolder:
    """One short IMAP session per call: these are rare, and a long one would go stale."""

    def __init__(self, imap: Imap, tokens: AccessTokens | None = None) -> None:
        self.settings = imap
        self.tokens = tokens
        self._name = imap.sent_folder  # found on first use when not configured

    @property
    def files_copies(self) -> bool:
        """Whether outreach files a copy of each sent message (the server doesn't)."""
        return self.settings.save_sent and not self.settings.server_saves_sent

    def append(self, data: bytes, when: datetime) -> None:
        """File a copy of a sent message, marked as read (unless the server files its own)."""
        if not self.files_copies:
            return
        client = open_imap(self.settings, self.tokens)
        try:
            client.append(self._folder(client), data, flags=[b"\\Seen"], msg_time=when)
        finally:
            close_imap(client)

    def contains(self, message_id: str) -> bool:
        """Whether the Sent folder holds a message with this Message-ID."""
        client = open_imap(self.settings, self.tokens)
        try:
            client.select_folder(self._folder(client), readonly=True)
            return bool(client.search(["HEADER", "Message-ID", message_id]))
        finally:
            close_imap(client)

    def _folder(self, client: IMAPClient) -> str:
        if not self._name:
            self._name = find_sent_folder(client)
        return self._name


def find_sent_folder(client: IMAPClient) -> str:
    """The folder the server marks ``\\Sent`` (RFC 6154), else one with a usual name ("Sent
    Items", "Sent Messages"...; IMAPClient's list), else "Sent"."""
    return str(client.find_special_folder(SENT) or DEFAULT_SENT)
