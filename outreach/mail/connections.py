"""The one place that turns the configuration into mail connections: how to open SMTP sessions,
which inbox source to read (IMAP folders or a local Maildir), and the Sent folder, if kept."""

from __future__ import annotations

from outreach.config import Settings
from outreach.mail.abc import InboxSource, OpenSmtp
from outreach.mail.sent_folder import SentFolder
from outreach.mail.smtp import smtp_sessions


def open_smtp(settings: Settings) -> OpenSmtp:
    """Opens SMTP sessions to ``[smtp]``."""
    return smtp_sessions(settings.smtp)


def inbox_source(settings: Settings) -> InboxSource:
    """``[inbound] maildir`` when set, else the ``[imap]`` folders."""
    if settings.inbound.maildir is not None:
        from outreach.mail.maildir import MaildirInbox  # noqa: PLC0415  (only one is used)

        return MaildirInbox(settings.inbound.maildir)
    from outreach.mail.imap_inbox import ImapInbox  # noqa: PLC0415  (IMAPClient loads slowly)

    return ImapInbox(settings.imap)


def sent_folder(settings: Settings) -> SentFolder | None:
    """The IMAP Sent folder when ``[imap] save_sent`` asks outreach to file copies there."""
    return SentFolder(settings.imap) if settings.imap.save_sent else None
