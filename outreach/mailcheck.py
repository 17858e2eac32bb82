"""Checking that the configured SMTP and IMAP servers are reachable, trusted and accept our login.

Used by ``outreach config check --connect`` (and by the daemon before it reports ready).
Certificates are always verified; ``ca_file`` adds a private CA. No password reaches a message.
"""

from __future__ import annotations

import asyncio

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from outreach.config import Imap, Server, Smtp
from outreach.delivery import SmtpTransport
from outreach.errors import MailServerUnusable
from outreach.secure import connect_problem, tls_context


def check_smtp(smtp: Smtp) -> str:
    """Connect, secure and log in to the SMTP server; returns what succeeded, or raises."""
    return asyncio.run(_check_smtp(smtp))


async def _check_smtp(smtp: Smtp) -> str:
    async with SmtpTransport(smtp) as transport:
        await transport.connect()
    name = f"smtp {smtp.host}:{smtp.effective_port}"
    if smtp.username:
        return f"{name}: {smtp.security}, logged in as {smtp.username}"
    return f"{name}: {smtp.security}, connected (no username, so no login)"


def check_imap(imap: Imap) -> str:
    """Connect, secure, log in and open each watched folder read-only; returns what succeeded."""
    name = f"imap {imap.host}:{imap.effective_port}"
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
        raise MailServerUnusable(name, connect_problem(exc, "imap")) from None
    try:
        try:
            client.login(imap.username, _password(imap, "imap"))
        except LoginError as exc:
            raise MailServerUnusable(name, f"login refused for {imap.username} ({exc})") from None
        folders = [*imap.folders, *([imap.sent_folder] if imap.save_sent else [])]
        for folder in folders:
            try:
                client.select_folder(folder, readonly=True)
            except IMAPClientError:
                raise MailServerUnusable(
                    name, f"folder {folder!r} does not exist for {imap.username}"
                ) from None
        return f"{name}: {imap.security}, logged in as {imap.username}; {', '.join(folders)} found"
    finally:
        try:
            client.logout()
        except (IMAPClientError, OSError):
            client.shutdown()


def _password(server: Server, section: str) -> str:
    if server.password is None:
        raise MailServerUnusable(
            f"{section} {server.host}",
            f"no password: put it in $CREDENTIALS_DIRECTORY/{section}_password or set "
            f"OUTREACH_{section.upper()}__PASSWORD",
        )
    return server.password.get_secret_value()
