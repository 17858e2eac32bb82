"""Checking that the configured SMTP and IMAP servers are reachable, trusted and accept our login.

Used by ``outreach config check --connect`` (and by the daemon before it reports ready).
Certificates are always verified; ``ca_file`` adds a private CA. No password reaches a message.
"""

from __future__ import annotations

import asyncio

from imapclient.exceptions import IMAPClientError

from outreach.config import Imap, Smtp
from outreach.errors import MailServerUnusable
from outreach.mail.imap import close_imap, open_imap
from outreach.mail.sent_folder import find_sent_folder
from outreach.mail.smtp import SmtpSession
from outreach.signin.tokens import AccessTokens


def check_smtp(smtp: Smtp, tokens: AccessTokens | None = None) -> str:
    """Connect, secure and log in to the SMTP server; returns what succeeded, or raises."""
    return asyncio.run(check_smtp_async(smtp, tokens))


async def check_smtp_async(smtp: Smtp, tokens: AccessTokens | None = None) -> str:
    async with SmtpSession(smtp, tokens) as transport:
        await transport.connect()
    name = f"smtp {smtp.host}:{smtp.effective_port}"
    if smtp.auth == "oauth2":
        return f"{name}: {smtp.security}, signed in as {smtp.username} (OAuth2)"
    if smtp.username:
        return f"{name}: {smtp.security}, logged in as {smtp.username}"
    return f"{name}: {smtp.security}, connected (no username, so no login)"


def check_imap(imap: Imap, tokens: AccessTokens | None = None) -> str:
    """Connect, secure, log in and open each watched folder read-only; returns what succeeded."""
    name = f"imap {imap.host}:{imap.effective_port}"
    client = open_imap(imap, tokens)
    try:
        keeps_sent = imap.save_sent or imap.server_saves_sent
        sent = (imap.sent_folder or find_sent_folder(client)) if keeps_sent else None
        folders = [*imap.folders, *([sent] if sent else [])]
        for folder in folders:
            try:
                client.select_folder(folder, readonly=True)
            except IMAPClientError:
                raise MailServerUnusable(
                    name, f"folder {folder!r} does not exist for {imap.username}"
                ) from None
        how = " (OAuth2)" if imap.auth == "oauth2" else ""
        return (
            f"{name}: {imap.security}, logged in as {imap.username}{how}; "
            f"{', '.join(folders)} found"
        )
    finally:
        close_imap(client)
