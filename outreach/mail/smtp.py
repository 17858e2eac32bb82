"""SMTP delivery: one verified session reused across a pass, each reply classified.

aiosmtplib connects, secures (TLS or STARTTLS) and logs in (password or XOAUTH2). Then the
session's transport is handed to ``_Replies``, which drives each mail transaction itself:
aiosmtplib reads one reply per command written, and RFC 2920 PIPELINING sends MAIL, RCPT and
DATA in one write and reads their three replies after, one round trip instead of three (when
the server offers it; else each command waits for its reply, as before).

The phase decides what a failure means: before the message's content is written nothing was
handed over and a retry is safe; a connection lost after it may or may not have delivered
the message, so it is reported ``unknown`` and never resent blindly. Reply codes follow RFC
5321 section 4.2.1 (4xx temporary, 5xx permanent) and enhanced status codes RFC 3463 (5.7.x:
security or policy, i.e. the practice's own standing).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections import deque
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


async def _greet(client: aiosmtplib.SMTP) -> None:
    """EHLO, so the server's extensions are known; HELO for a server without ESMTP."""
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        await client.helo()


class SmtpLost(Exception):
    """The connection ended (or a reply did not come in time) with replies still due."""


_DOT_AT_LINE_START = re.compile(rb"(?m)^\.")
_LINE_ENDS = re.compile(rb"\r\n|\n|\r(?!\n)")


def data_block(message: bytes) -> bytes:
    """A message as DATA carries it: CRLF line ends, a leading dot doubled (RFC 5321 section
    4.5.2), the final CRLF.CRLF."""
    message = _LINE_ENDS.sub(b"\r\n", message)
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return _DOT_AT_LINE_START.sub(b"..", message) + b".\r\n"


MAX_REPLY_BYTES = 65536  # RFC 5321 allows 512 per reply line; room for long multi-line ones


class _Replies(asyncio.Protocol):
    """A logged-in session's transport after aiosmtplib: commands written as they come, replies
    read in order, several outstanding at once (PIPELINING)."""

    def __init__(self, transport: asyncio.Transport, timeout: float | None) -> None:
        self.transport = transport
        self.timeout = timeout
        self._buffer = bytearray()
        self._replies: deque[tuple[int, str]] = deque()
        self._lines: list[str] = []  # the lines of a multi-line reply so far
        self._waiter: asyncio.Future[None] | None = None
        self._lost: str | None = None
        # Set when the transport is closed for good (with TLS, after its shutdown).
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > MAX_REPLY_BYTES:  # no line end in sight: not an SMTP server
            self._end(f"a reply line longer than {MAX_REPLY_BYTES} bytes")
            return
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[: end + 1]).rstrip(b"\r\n")
            del self._buffer[: end + 1]
            text = line[4:].decode("utf-8", "surrogateescape").strip()
            self._lines.append(text)
            if line[3:4] != b"-":  # the last line of a reply
                if not (line[:3].isdigit() and line[:1] in b"2345"):
                    self._end(f"a malformed reply {line[:60]!r}")
                    return
                self._replies.append((int(line[:3]), "\n".join(self._lines)))
                self._lines = []
                self._wake()

    def eof_received(self) -> bool:
        return False  # closes the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = self._lost or (str(exc) if exc else "the server closed the connection")
        self._wake()
        if not self.gone.done():
            self.gone.set_result(None)

    def _end(self, why: str) -> None:
        self._lost = why
        self.transport.close()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def write(self, data: bytes) -> None:
        if self._lost is not None or self.transport.is_closing():
            raise SmtpLost(self._lost or "the connection is closing")
        self.transport.write(data)

    async def reply(self) -> tuple[int, str]:
        """The next reply, in the order the commands were written; SmtpLost if none comes."""
        while not self._replies:
            if self._lost is not None:
                raise SmtpLost(self._lost)
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self._waiter, self.timeout)
            except TimeoutError:
                self._end(f"no reply within {self.timeout} s")
                raise SmtpLost(f"no reply within {self.timeout} s") from None
            finally:
                self._waiter = None
        return self._replies.popleft()

    def close(self) -> None:
        self.transport.close()


CLOSE_WAIT_SECONDS = 2.0  # for a closed session's TLS shutdown, before the socket is cut


class SmtpSession:
    """The ``SmtpTransport``: one connection reused across a pass, reconnected when the
    server drops it. The only place an SMTP client is constructed."""

    def __init__(self, smtp: Smtp, tokens: AccessTokens | None = None) -> None:
        self.settings = smtp
        self.tokens = tokens  # with auth = "oauth2": the access tokens for XOAUTH2
        self._line: _Replies | None = None
        self._dropped: list[_Replies] = []  # closed; ``close`` waits for them to be gone
        self._pipelining = False
        self._smtputf8 = False

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
        if self._line is not None:
            if not self._line.transport.is_closing():
                return
            self._drop()  # the server closed it: ``connected`` says so until a new one opens
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
            if token is not None or smtp.username:
                await self._log_in(client, token)
            else:
                await _greet(client)
        except MailServerUnusable:  # a refused login (an OSError too): said by _log_in
            client.close()
            raise
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            client.close()
            if raw is not None:
                raw.close()  # asyncio leaves the plain transport open when TLS fails
            raise MailServerUnusable(
                name, connect_problem(exc, "smtp"), transient=is_transient(exc)
            ) from None
        transport = client.transport
        assert isinstance(transport, asyncio.Transport)
        self._pipelining = client.supports_extension("pipelining")
        self._smtputf8 = client.supports_extension("smtputf8")
        self._line = _Replies(transport, smtp.timeout)
        transport.set_protocol(self._line)  # aiosmtplib's part ends here

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
            line = self._line
            assert line is not None
            envelope = self._envelope(message)
            if isinstance(envelope, Delivery):
                return envelope
            try:
                refused = await self._begin(line, envelope)
            except SmtpLost as exc:
                self._drop()
                if attempt == 2:
                    return Delivery(Outcome.RETRY, f"connection lost before DATA: {exc}")
                continue
            if refused is not None:
                return refused
            try:
                line.write(data_block(message.data))
                code, text = await line.reply()
            except SmtpLost as exc:
                self._drop()
                return Delivery(Outcome.UNKNOWN, f"connection lost during DATA: {exc}")
            if code != 250:
                return Delivery(classify_reply(code, text), f"{code} {text}")
            return Delivery(Outcome.SENT)
        raise AssertionError("unreachable")

    def _envelope(self, message: OutboundMessage) -> list[bytes] | Delivery:
        """MAIL, RCPT and DATA for a message, or the Delivery saying it can't be sent here."""
        options = b""
        try:
            sender, recipient = (
                f"<{a}>".encode("ascii") for a in (message.sender, message.recipient)
            )
        except UnicodeEncodeError:
            if not self._smtputf8:
                return Delivery(
                    Outcome.RETRY,
                    "not handed over: the address is not ASCII and the server does not offer "
                    "SMTPUTF8 (RFC 6531)",
                )
            sender, recipient = (f"<{a}>".encode() for a in (message.sender, message.recipient))
            options = b" SMTPUTF8"
        return [b"MAIL FROM:" + sender + options, b"RCPT TO:" + recipient, b"DATA"]

    async def _begin(self, line: _Replies, envelope: list[bytes]) -> Delivery | None:
        """MAIL, RCPT and DATA (in one write with PIPELINING): None once the server waits for
        the content (354), else the Delivery its refusal means, the session reset for the
        next message."""
        if self._pipelining:
            line.write(b"".join(command + b"\r\n" for command in envelope))
            replies = [await line.reply() for _ in envelope]
        else:
            replies = []
            for command in envelope:
                line.write(command + b"\r\n")
                replies.append(await line.reply())
                if replies[-1][0] not in (250, 251, 354):
                    break
        expected = ((250,), (250, 251), (354,))
        for phase, ((code, text), wanted) in enumerate(zip(replies, expected, strict=False)):
            if code not in wanted:
                if replies[-1][0] == 354:
                    # DATA accepted after a refusal (a broken server): the content would be
                    # an empty message, so end the session instead; nothing was handed over.
                    self._drop()
                else:
                    await self._reset()
                outcome = classify_reply(code, text)
                if phase == 0 and outcome is Outcome.FAILED:
                    # MAIL FROM refused for good: our sender, not this recipient, so a pause
                    # for the therapist, never a bounce of every contact in turn.
                    outcome = Outcome.POLICY
                return Delivery(outcome, f"{code} {text}")
        return None

    @property
    def connected(self) -> bool:
        """Whether a session is open (after a lost connection, the server may be gone)."""
        return self._line is not None and not self._line.transport.is_closing()

    async def _reset(self) -> None:
        """RSET after a refusal; a session that won't reset is ended (its next MAIL would be
        refused as out of sequence, and read as the recipient's refusal)."""
        if self._line is not None:
            try:
                self._line.write(b"RSET\r\n")
                code, _text = await self._line.reply()
            except SmtpLost:
                code = 0
            if code != 250:
                self._drop()

    def _drop(self) -> None:
        if self._line is not None:
            self._line.close()
            self._dropped.append(self._line)
            self._line = None

    async def close(self) -> None:
        """QUIT politely, or just close when the server is gone; either way, return once
        every connection of this session is closed (TLS shut down, socket released), or
        cut after a moment."""
        if self._line is not None:
            try:
                self._line.write(b"QUIT\r\n")
                await self._line.reply()
            except SmtpLost:
                pass
            self._drop()
        dropped, self._dropped = self._dropped, []
        for line in dropped:
            try:
                await asyncio.wait_for(asyncio.shield(line.gone), CLOSE_WAIT_SECONDS)
            except TimeoutError:
                line.transport.abort()
        await asyncio.sleep(0)  # let the loop run the last close callbacks


def smtp_sessions(smtp: Smtp, tokens: AccessTokens | None = None) -> OpenSmtp:
    """How services open SMTP sessions to the configured server."""
    return lambda: SmtpSession(smtp, tokens)


__all__ = [
    "Delivery",
    "Outcome",
    "SmtpSession",
    "classify_reply",
    "data_block",
    "smtp_password",
    "smtp_sessions",
]
