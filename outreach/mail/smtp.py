"""SMTP delivery with aiosmtplib: one verified session per batch, each reply classified.

The transaction is driven phase by phase (MAIL, RCPT, DATA) because the phase decides what a
failure means: before DATA nothing was handed over and a retry is safe; a connection lost
during DATA may or may not have delivered the message, so it is reported ``unknown`` and never
resent blindly. Reply codes follow RFC 5321 section 4.2.1 (4xx temporary, 5xx permanent) and
enhanced status codes RFC 3463 (5.7.x: security or policy, i.e. the practice's own standing).
"""

from __future__ import annotations

import asyncio
import ssl
from types import TracebackType

import aiosmtplib

from outreach.config import Smtp
from outreach.errors import MailServerUnusable
from outreach.mail.abc import Delivery, OpenSmtp, Outcome
from outreach.mail.compose import OutboundMessage
from outreach.mail.refusals import login_problem
from outreach.mail.tls import connect_problem, is_transient, tls_context
from outreach.signin.tokens import AccessTokens


def classify_reply(code: int, message: str) -> Outcome:
    """The outcome an SMTP error reply stands for."""
    if 400 <= code < 500:
        return Outcome.RETRY
    enhanced = message.strip().split(" ", 1)[0]
    if enhanced.startswith("5.7.") or code in (530, 534, 535):
        return Outcome.POLICY
    return Outcome.FAILED


def smtp_password(smtp: Smtp) -> str:
    """The SMTP password, or MailServerUnusable saying where to put it."""
    if smtp.password is None:
        raise MailServerUnusable(
            f"smtp {smtp.host}",
            "no password: put it in $CREDENTIALS_DIRECTORY/smtp_password or set "
            "OUTREACH_SMTP__PASSWORD",
        )
    return smtp.password.get_secret_value()


class SmtpSession:
    """The ``SmtpTransport`` over aiosmtplib: one connection reused across a batch, reconnected
    when the server drops it. The only place an SMTP client is constructed."""

    def __init__(self, smtp: Smtp, tokens: AccessTokens | None = None) -> None:
        self.settings = smtp
        self.tokens = tokens  # with auth = "oauth2": the access tokens for XOAUTH2
        self._client: aiosmtplib.SMTP | None = None

    async def __aenter__(self) -> SmtpSession:
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect, secure and log in, or raise MailServerUnusable saying why."""
        if self._client is not None and self._client.is_connected:
            return
        smtp = self.settings
        name = f"smtp {smtp.host}:{smtp.effective_port}"
        token = await self._token() if smtp.auth == "oauth2" else None
        client = aiosmtplib.SMTP(
            hostname=smtp.host,
            port=smtp.effective_port,
            use_tls=smtp.security == "tls",
            start_tls=False,  # done below, so a failed handshake can't leak the socket
            tls_context=tls_context(smtp.ca_file) if smtp.security != "none" else None,
            timeout=smtp.timeout,
        )
        raw = None
        try:
            await client.connect()
            if smtp.security == "starttls":
                raw = client.transport
                await client.starttls()
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            client.close()
            if raw is not None:
                raw.close()  # asyncio leaves the plain transport open when TLS fails
            raise MailServerUnusable(
                name, connect_problem(exc, "smtp"), transient=is_transient(exc)
            ) from None
        if token is not None or smtp.username:
            try:
                await self._log_in(client, token)
            except MailServerUnusable:
                client.close()
                raise
        self._client = client

    async def _token(self) -> str:
        if self.tokens is None:
            raise MailServerUnusable(f"smtp {self.settings.host}", 'auth = "oauth2" but no sign-in')
        return await asyncio.to_thread(self.tokens.token)

    async def _log_in(self, client: aiosmtplib.SMTP, token: str | None) -> None:
        """Log in with the password, or with ``token`` by SASL XOAUTH2 (a refused token is
        refreshed and tried once more); MailServerUnusable saying why not."""
        smtp = self.settings
        name = f"smtp {smtp.host}:{smtp.effective_port}"
        for attempt in (1, 2):
            try:
                if token is None:
                    await client.login(smtp.username, smtp_password(smtp))
                else:
                    await client.auth_xoauth2(smtp.username, token)
                return
            except aiosmtplib.SMTPAuthenticationError as exc:
                if token is None or attempt == 2:
                    reply = f"{exc.code} {exc.message}"
                    problem = login_problem(smtp.username, smtp.auth, reply)
                    raise MailServerUnusable(name, problem) from None
            except aiosmtplib.SMTPException as exc:
                raise MailServerUnusable(name, f"login failed for {smtp.username}: {exc}") from None
            assert self.tokens is not None  # a token came from them
            token = await asyncio.to_thread(self.tokens.refused, token)
        raise AssertionError("unreachable")

    async def send(self, message: OutboundMessage) -> Delivery:
        """One SMTP transaction; reconnects once if the connection was lost before DATA."""
        for attempt in (1, 2):
            try:
                await self.connect()
            except MailServerUnusable as exc:
                # Nothing was handed over: safe to try again later.
                return Delivery(Outcome.RETRY, f"not handed over: {exc}")
            client = self._client
            assert client is not None
            try:
                await client.mail(message.sender)
                await client.rcpt(message.recipient)
            except aiosmtplib.SMTPResponseException as exc:
                await self._reset()
                return Delivery(classify_reply(exc.code, exc.message), f"{exc.code} {exc.message}")
            except (aiosmtplib.SMTPException, OSError) as exc:
                await self._drop()
                if attempt == 2:
                    return Delivery(Outcome.RETRY, f"connection lost before DATA: {exc}")
                continue
            try:
                await client.data(message.data)
            except aiosmtplib.SMTPResponseException as exc:
                await self._reset()
                return Delivery(classify_reply(exc.code, exc.message), f"{exc.code} {exc.message}")
            except (aiosmtplib.SMTPException, OSError) as exc:
                await self._drop()
                return Delivery(Outcome.UNKNOWN, f"connection lost during DATA: {exc}")
            return Delivery(Outcome.SENT)
        raise AssertionError("unreachable")

    @property
    def connected(self) -> bool:
        """Whether a session is open (after a lost connection, the server may be gone)."""
        return self._client is not None

    async def _reset(self) -> None:
        if self._client is not None:
            try:
                await self._client.rset()
            except (aiosmtplib.SMTPException, OSError):
                await self._drop()

    async def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
            await asyncio.sleep(0)  # let the loop finish closing the socket

    async def close(self) -> None:
        """QUIT politely, or just close when the server is gone."""
        if self._client is None:
            return
        try:
            await self._client.quit()
        except (aiosmtplib.SMTPException, OSError):
            self._client.close()
        self._client = None
        await asyncio.sleep(0)  # let the loop finish closing the socket before it ends


def smtp_sessions(smtp: Smtp, tokens: AccessTokens | None = None) -> OpenSmtp:
    """How services open SMTP sessions to the configured server."""
    return lambda: SmtpSession(smtp, tokens)


__all__ = ["Delivery", "Outcome", "SmtpSession", "classify_reply", "smtp_password", "smtp_sessions"]
