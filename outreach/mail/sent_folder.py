"""The IMAP Sent folder: filing copies of sent messages, and finding one by its Message-ID.

Plain SMTP servers don't file what they send, so with ``[imap] save_sent`` outreach APPENDs
each sent message itself. After a crash those copies tell whether a message left.
IMAPClient is blocking: callers run these in a worker thread.
"""

from __future__ import annotations

import contextlib
from datetime import datetime

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from outreach.config import Imap
from outreach.errors import MailServerUnusable
from outreach.mail.tls import connect_problem, is_transient, tls_context


def open_imap(imap: Imap) -> IMAPClient:
    """A logged-in IMAP session (TLS verified), or MailServerUnusable saying why not."""
    name = f"imap {imap.host}:{imap.effective_port}"
    if imap.password is None:
        raise MailServerUnusable(
            f"imap {imap.host}",
            "no password: put it in $CREDENTIALS_DIRECTORY/imap_password or set "
            "OUTREACH_IMAP__PASSWORD",
        )
    context = tls_context(imap.ca_file) if imap.security != "none" else None
    try:
        client = IMAPClient(
            imap.host,
            port=imap.effective_port,
            ssl=imap.security == "tls",
            ssl_context=context,
            timeout=imap.timeout,
        )
        if imap.security == "starttls":
            client.starttls(context)
    except (IMAPClientError, OSError) as exc:
        raise MailServerUnusable(
            name, connect_problem(exc, "imap"), transient=is_transient(exc)
        ) from None
    try:
        client.login(imap.username, imap.password.get_secret_value())
    except LoginError as exc:
        close_imap(client)
        raise MailServerUnusable(name, f"login refused for {imap.username} ({exc})") from None
    return client


def close_imap(client: IMAPClient) -> None:
    """Log out, or just drop the connection when the server is gone."""
    try:
        client.logout()
    except (IMAPClientError, OSError):
        with contextlib.suppress(OSError):  # the socket may be gone already
            client.shutdown()


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
