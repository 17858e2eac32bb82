"""`config check --connect` on real servers: Dovecot (IMAP, IMAPS), aiosmtpd (STARTTLS, TLS)."""

from __future__ import annotations

import imaplib
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from outreach.config import Settings, load_config
from outreach.errors import MailServerUnusable
from outreach.mail.check import check_imap, check_smtp
from tests.configs import edit_config
from tests.conftest import Run
from tests.mailstack import Dovecot, SmtpServer, free_port, start_smtp

# A socket left open by the TLS-failure paths of the client libraries (asyncio's start_tls,
# aiosmtpd's readiness probe) is sometimes collected during a later test; it is not ours to
# close, so its ResourceWarning must not fail an unrelated test.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture
def mail_config(
    config_file: Path, dovecot: Dovecot, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The example config pointed at the test servers, passwords in the environment."""
    user, password = dovecot.user(1)
    edit_config(
        config_file,
        {
            "smtp.host": "127.0.0.1",
            "smtp.port": smtp_server.port,
            "smtp.username": user,
            "imap.host": "127.0.0.1",
            "imap.port": dovecot.imaps_port,
            "imap.username": user,
        },
        add={"smtp.ca_file": str(dovecot.cert), "imap.ca_file": str(dovecot.cert)},
    )
    monkeypatch.setenv("OUTREACH_SMTP__PASSWORD", password)
    monkeypatch.setenv("OUTREACH_IMAP__PASSWORD", password)
    return config_file


def settings_with(path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for key, value in env.items():
        monkeypatch.setenv(f"OUTREACH_{key}", value)
    return load_config(path)


class TestConnect:
    def test_logs_in_to_both_servers(self, mail_config: Path, cli: Callable[..., Run]) -> None:
        run = cli("config", "check", "--connect")
        assert run.exit_code == 0, run.output
        assert "starttls, logged in as user01@example.test" in run.stdout
        assert "tls, logged in as user01@example.test; INBOX found" in run.stdout

    def test_imap_starttls_on_the_plain_port(
        self, mail_config: Path, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        settings = settings_with(
            mail_config, monkeypatch, IMAP__SECURITY="starttls", IMAP__PORT=str(dovecot.imap_port)
        )
        assert "starttls, logged in" in check_imap(settings.imap)

    def test_smtp_implicit_tls(
        self, mail_config: Path, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        server = start_smtp(dovecot.cert, dovecot.directory / "key.pem", implicit_tls=True)
        try:
            settings = settings_with(
                mail_config, monkeypatch, SMTP__SECURITY="tls", SMTP__PORT=str(server.port)
            )
            assert "tls, logged in as user01@example.test" in check_smtp(settings.smtp)
        finally:
            server.stop()

    def test_wrong_password_is_refused_without_echoing_it(
        self, mail_config: Path, cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("OUTREACH_SMTP__PASSWORD", "wrong-pw-smtp")
        monkeypatch.setenv("OUTREACH_IMAP__PASSWORD", "wrong-pw-imap")
        run = cli("config", "check", "--connect")
        assert run.exit_code == 2
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 2
        assert lines[0].startswith("smtp 127.0.0.1:") and "login refused for user01" in lines[0]
        assert lines[1].startswith("imap 127.0.0.1:") and "login refused for user01" in lines[1]
        assert "wrong-pw" not in run.output

    def test_untrusted_certificate(
        self, mail_config: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        edit_config(mail_config, remove=["smtp.ca_file", "imap.ca_file"])
        settings = load_config(mail_config)
        with pytest.raises(MailServerUnusable, match="TLS certificate is not trusted"):
            check_imap(settings.imap)
        with pytest.raises(MailServerUnusable, match=r"set smtp\.ca_file"):
            check_smtp(settings.smtp)

    def test_nothing_listening(self, mail_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        port = str(free_port())
        settings = settings_with(mail_config, monkeypatch, SMTP__PORT=port, IMAP__PORT=port)
        with pytest.raises(MailServerUnusable, match="connection refused"):
            check_smtp(settings.smtp)
        with pytest.raises(MailServerUnusable, match="connection refused"):
            check_imap(settings.imap)

    def test_missing_folder(self, mail_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        settings = settings_with(mail_config, monkeypatch, IMAP__FOLDERS='["INBOX", "Referrals"]')
        with pytest.raises(MailServerUnusable, match="folder 'Referrals' does not exist"):
            check_imap(settings.imap)

    def test_missing_password(self, mail_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("OUTREACH_IMAP__PASSWORD")
        with pytest.raises(MailServerUnusable, match="no password"):
            check_imap(load_config(mail_config).imap)


class TestMailStack:
    def test_smtp_delivers_through_lmtp_into_imap(
        self, dovecot: Dovecot, smtp_server: SmtpServer
    ) -> None:
        """The harness later issues build on: sent by SMTP, it appears in the IMAP INBOX."""
        import smtplib

        user, password = dovecot.user(2)
        dovecot.empty(user)
        context = ssl.create_default_context(cafile=str(dovecot.cert))
        with smtplib.SMTP("127.0.0.1", smtp_server.port) as smtp:
            smtp.starttls(context=context)
            smtp.login(user, password)
            smtp.sendmail("maya@example.test", [user], b"Subject: hello\r\n\r\nHi.\r\n")
        imap = imaplib.IMAP4_SSL("127.0.0.1", dovecot.imaps_port, ssl_context=context)
        try:
            imap.login(user, password)
            status, data = imap.select("INBOX", readonly=True)
            assert (status, data) == ("OK", [b"1"])
        finally:
            imap.logout()
        assert smtp_server.received[-1].rcpt_tos == [user]
