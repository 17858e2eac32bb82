"""IMAP sessions: the one place an IMAP client is constructed, secured and logged in."""

from __future__ import annotations

import contextlib
import logging

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from outreach.config import Imap
from outreach.errors import MailServerUnusable
from outreach.mail.tls import connect_problem, is_transient, tls_context

# imapclient's protocol log, in which it has imaplib write every line at its debug level 5.
PROTOCOL_LOG = logging.getLogger("imapclient.imaplib")


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
        # imapclient sets imaplib's debug level to 5, where imaplib formats every response,
        # whole messages included, into log lines even when nothing logs debug: each copy of a
        # 25 MB message costs 25 MB more. Level 4 logs the lines sent and read and the sizes
        # of literals, never their bytes (runtime/logs.py filters the rest); 0 formats nothing.
        client._imap.debug = 4 if PROTOCOL_LOG.isEnabledFor(logging.DEBUG) else 0
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
