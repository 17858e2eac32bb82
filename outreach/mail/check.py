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
from outreach.mail.smtp import SmtpSession


def check_smtp(smtp: Smtp) -> str:
    """Connect, secure and log in to the SMTP server; returns what succeeded, or raises."""
    return asyncio.run(check_smtp_async(smtp))


async def check_smtp_async(smtp: Smtp) -> str:
    async with SmtpSession(smtp) as transport:
        await transport.connect()
    name = f"smtp {smtp.host}:{smtp.effective_port}"
    if smtp.username:
        return f"{name}: {smtp.security}, logged in as {smtp.username}"
    return f"{name}: {smtp.security}, connected (no username, so no login)"


def check_imap(imap: Imap) -> str:
    """Connect, secure, log in and open each watched folder read-only; returns what succeeded."""
    name = f"imap {imap.host}:{imap.effective_port}"
    client = open_imap(imap)
    try:
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
        close_imap(client)
