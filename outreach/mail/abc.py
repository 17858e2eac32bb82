"""The mail seams: what the services need from an SMTP server and from an inbox, as interfaces.

Services are handed an ``OpenSmtp`` (a way to open an ``SmtpTransport``) and an ``InboxSource``
built in ``mail.connections``; they never construct a client. The inbox side is inverted: a
source reads messages and hands each to a ``MessageHandler`` (the inbound processor), so this
room never imports the services.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from outreach.mail.compose import OutboundMessage


class Outcome(enum.Enum):
    """What became of one message."""

    SENT = "sent"
    RETRY = "retry"  # temporary (4xx, or lost before DATA): try again later
    FAILED = "failed"  # permanent (5xx for this recipient): a hard bounce
    POLICY = "policy"  # 5.7.x: refused for the practice's authentication or reputation
    UNKNOWN = "unknown"  # lost during DATA: may or may not have been delivered


@dataclass(frozen=True)
class Delivery:
    """The outcome of one send, with the server's words."""

    outcome: Outcome
    detail: str = ""


class SmtpTransport(Protocol):
    """One SMTP session, reused across a batch; ``send`` never raises for a refusal."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None: ...

    async def connect(self) -> None:
        """Connect, secure and log in, or raise MailServerUnusable saying why."""
        ...

    async def send(self, message: OutboundMessage) -> Delivery:
        """One transaction; the outcome says whether it was handed over."""
        ...

    @property
    def connected(self) -> bool:
        """Whether a session is open (after a lost connection, the server may be gone)."""
        ...

    async def close(self) -> None: ...


#: Opens a new (not yet connected) SMTP session: what services are given instead of a server.
OpenSmtp = Callable[[], SmtpTransport]


@dataclass(frozen=True)
class Watermark:
    """Where a message sits in its folder, saved with its effects."""

    folder: str
    uidvalidity: int
    uid: int


class HandledMessage(Protocol):
    """What handling one message came to, as a source and its callers read it."""

    @property
    def message_key(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def contact(self) -> str | None: ...
    @property
    def effect(self) -> str: ...
    @property
    def move_to(self) -> str | None:
        """A folder a rule asks for the message to be filed in."""
        ...


class MessageHandler(Protocol):
    """Takes each new message from a source: classifies it and applies its effects."""

    def handle(
        self, raw: bytes, *, folder: str, now: datetime, watermark: Watermark | None = None
    ) -> HandledMessage:
        """Handle one message (its watermark saved with its effects); never raises for its
        content."""
        ...

    def watermark(self, folder: str) -> Watermark | None:
        """The last message handled in ``folder``, if any."""
        ...

    def advance(self, watermark: Watermark, now: datetime) -> None:
        """Move ``folder``'s watermark past messages that no longer exist."""
        ...


@dataclass
class SyncReport:
    """What one catch-up pass saw."""

    results: list[HandledMessage] = field(default_factory=list)
    folders: dict[str, int] = field(default_factory=dict)  # folder -> messages read


class InboxSource(Protocol):
    """Where replies arrive: the practice's IMAP folders, or a local Maildir."""

    @property
    def description(self) -> str:
        """What is watched, for people ("INBOX, Referrals" or a Maildir's path)."""
        ...

    @property
    def location(self) -> str:
        """What is watched and where ("INBOX on imap.example.com")."""
        ...

    def sync_once(
        self, handler: MessageHandler, *, now: Callable[[], datetime] | None = None
    ) -> SyncReport:
        """Read every message that arrived since the last pass."""
        ...

    def watch(
        self,
        handler: MessageHandler,
        *,
        stop: threading.Event,
        poll_seconds: float,
        on_pass: Callable[[SyncReport], None] | None = None,
        heartbeat: Callable[[], None] | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        """Catch up, then keep reading new messages until ``stop`` is set; blocking.

        ``heartbeat`` is called at least once a second while the source waits, and after
        each message; a source stuck in one call stops calling it."""
        ...
