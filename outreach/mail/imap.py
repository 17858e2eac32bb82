"""IMAP sessions: the one place an IMAP client is constructed, secured and logged in."""

from __future__ import annotations

import contextlib
import logging

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from outreach.config import Imap
from outreach.errors import MailServerUnusable
from outreach.mail.refusals import login_problem
from outreach.mail.tls import connect_problem, is_transient, tls_context
from outreach.signin.tokens import AccessTokens

# imapclient's protocol log, in which it has imaplib write every line at its debug level 5.
PROTOCOL_LOG = logging.getLogger("imapclient.imaplib")


def open_imap(imap: Imap, tokens: AccessTokens | None = None) -> IMAPClient:
    """A logged-in IMAP session (TLS verified), or MailServerUnusable saying why not.
    With ``auth = "oauth2"``, ``tokens`` gives the access token for SASL XOAUTH2."""
    name = f"imap {imap.host}:{imap.effective_port}"
    if imap.auth == "oauth2":
        if tokens is None:
            raise MailServerUnusable(name, 'auth = "oauth2" but no sign-in was set up')
        token = tokens.token()  # before connecting: a missing sign-in opens no socket
    elif imap.password is None:
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
    if imap.auth == "oauth2":
        assert tokens is not None
        _oauth2_login(client, imap, tokens, token)
        return client
    assert imap.password is not None
    try:
        client.login(imap.username, imap.password.get_secret_value())
    except LoginError as exc:
        close_imap(client)
        raise MailServerUnusable(name, login_problem(imap.username, "password", str(exc))) from None
    return client


def _oauth2_login(client: IMAPClient, imap: Imap, tokens: AccessTokens, token: str) -> None:
    """SASL XOAUTH2; a refused token is refreshed and tried once more (it may have been
    revoked since it was issued, or the clock is off)."""
    name = f"imap {imap.host}:{imap.effective_port}"
    debug = client._imap.debug
    client._imap.debug = 0  # imaplib would log the base64 SASL string, token inside
    try:
        for attempt in (1, 2):
            try:
                client.oauth2_login(imap.username, token)
                return
            except LoginError as exc:
                if attempt == 2:
                    close_imap(client)
                    problem = login_problem(imap.username, "oauth2", str(exc))
                    raise MailServerUnusable(name, problem) from None
            try:
                token = tokens.refused(token)
            except MailServerUnusable:
                close_imap(client)
                raise
    finally:
        client._imap.debug = debug


def close_imap(client: IMAPClient) -> None:
    """Log out, or just drop the connection when the server is gone."""
    try:
        client.logout()
    except (IMAPClientError, OSError):
        with contextlib.suppress(OSError):  # the socket may be gone already
            client.shutdown()
