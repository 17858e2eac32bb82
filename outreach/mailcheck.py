"""Checking that the configured SMTP and IMAP servers are reachable, trusted and accept our login.

Used by ``outreach config check --connect`` (and by the daemon before it reports ready).
Certificates are always verified; ``ca_file`` adds a private CA. No password reaches a message.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import aiosmtplib
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from outreach.config import Imap, Server, Smtp
from outreach.errors import MailServerUnusable


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """A verifying client TLS context: the system's CAs, plus ``ca_file`` when given."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def check_smtp(smtp: Smtp) -> str:
    """Connect, secure and log in to the SMTP server; returns what succeeded, or raises."""
    return asyncio.run(_check_smtp(smtp))


async def _check_smtp(smtp: Smtp) -> str:
    name = f"smtp {smtp.host}:{smtp.effective_port}"
    client = aiosmtplib.SMTP(
        hostname=smtp.host,
        port=smtp.effective_port,
        use_tls=smtp.security == "tls",
        start_tls=smtp.security == "starttls",
        tls_context=tls_context(smtp.ca_file) if smtp.security != "none" else None,
        timeout=smtp.timeout,
    )
    try:
        await client.connect()
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise MailServerUnusable(name, _connect_problem(exc, "smtp")) from None
    try:
        if smtp.username:
            password = _password(smtp, "smtp")
            try:
                await client.login(smtp.username, password)
            except aiosmtplib.SMTPAuthenticationError as exc:
                raise MailServerUnusable(
                    name, f"login refused for {smtp.username} ({exc.code} {exc.message})"
                ) from None
            except aiosmtplib.SMTPException as exc:
                raise MailServerUnusable(name, f"login failed for {smtp.username}: {exc}") from None
            return f"{name}: {smtp.security}, logged in as {smtp.username}"
        return f"{name}: {smtp.security}, connected (no username, so no login)"
    finally:
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError):
            client.close()


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
        raise MailServerUnusable(name, _connect_problem(exc, "imap")) from None
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


def _connect_problem(exc: BaseException, section: str) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (
                f"its TLS certificate is not trusted ({cause.verify_message}); if it uses a "
                f"private CA, set {section}.ca_file"
            )
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed ({cause.reason or cause}); check {section}.security and port"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused: nothing listens there; check host and port"
        if isinstance(cause, socket.gaierror):
            return f"unknown host ({cause.strerror})"
        if isinstance(cause, TimeoutError | socket.timeout):
            return "no answer before the timeout; check host, port and firewall"
        cause = cause.__cause__ or cause.__context__
    return f"can't connect ({exc})"
