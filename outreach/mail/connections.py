"""The one place that turns the configuration into mail connections: how to open SMTP sessions,
which inbox source to read (IMAP folders or a local Maildir), the Sent folder, if kept, and
the OAuth2 access tokens they sign in with."""

from __future__ import annotations

from outreach.config import Settings
from outreach.mail.abc import InboxSource, OpenSmtp
from outreach.mail.sent_folder import SentFolder
from outreach.mail.smtp import smtp_sessions
from outreach.signin.token_file import TokenFile
from outreach.signin.tokens import AccessTokens


def sign_in(settings: Settings) -> AccessTokens | None:
    """The access tokens for XOAUTH2 when ``[smtp]`` or ``[imap]`` signs in with OAuth2."""
    if settings.oauth2 is None or "oauth2" not in (settings.smtp.auth, settings.imap.auth):
        return None
    account = settings.imap.username or settings.smtp.username
    return AccessTokens(
        settings.oauth2, account, TokenFile.for_environment(settings.state_directory)
    )


def open_smtp(settings: Settings, tokens: AccessTokens | None = None) -> OpenSmtp:
    """Opens SMTP sessions to ``[smtp]``."""
    return smtp_sessions(settings.smtp, tokens)


def inbox_source(settings: Settings, tokens: AccessTokens | None = None) -> InboxSource:
    """``[inbound] maildir`` when set, else the ``[imap]`` folders."""
    if settings.inbound.maildir is not None:
        from outreach.mail.maildir import MaildirInbox  # noqa: PLC0415  (only one is used)

        return MaildirInbox(settings.inbound.maildir)
    from outreach.mail.imap_inbox import ImapInbox  # noqa: PLC0415  (IMAPClient loads slowly)

    return ImapInbox(settings.imap, tokens)


def sent_folder(settings: Settings, tokens: AccessTokens | None = None) -> SentFolder | None:
    """The IMAP Sent folder when outreach files copies there (``[imap] save_sent``) or the
    provider does (``server_saves_sent``): either way it tells, after a crash, what left."""
    imap = settings.imap
    return SentFolder(imap, tokens) if imap.save_sent or imap.server_saves_sent else None
