"""OAuth2 sign-in on real servers: ``outreach auth login`` through the device flow (RFC 8628
and Microsoft's, through msal) and the authorization code flow with PKCE, against a local
authorization server (tests/oauth2_server.py); XOAUTH2 logins to a Dovecot that checks the
tokens by introspection and to aiosmtpd; the daemon with short-lived tokens; a revoked sign-in
mid-run; provider presets; no token in any output."""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from outreach.config import load_config
from outreach.config.providers import PRESETS
from outreach.mail.check import check_imap, check_smtp
from outreach.mail.connections import sign_in
from outreach.mail.refusals import login_problem
from outreach.signin.login import log_in
from outreach.signin.token_file import TokenFile
from tests.configs import edit_config
from tests.conftest import RELAXED_SENDING, ROOT, Run
from tests.daemon_harness import DaemonProcess, ledger_states, start_daemon, write_contacts
from tests.mailstack import Dovecot, SmtpServer, start_smtp
from tests.oauth2_server import OAuth2Server

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

FAST = {
    "OUTREACH_DAEMON__DISPATCH_EVERY_SECONDS": "1",
    "OUTREACH_DAEMON__DIGEST": "false",
    "OUTREACH_INBOUND__POLL_SECONDS": "2",
}


@dataclass
class Mailbox:
    """The example config signing in with OAuth2 to the test servers as one Dovecot user."""

    config: Path
    user: str
    server: OAuth2Server
    dovecot: Dovecot
    sink: SmtpServer
    cli: Callable[..., Run]
    tmp_path: Path
    daemons: list[DaemonProcess] = field(default_factory=list)

    @property
    def token_file(self) -> Path:
        return self.config.parent / "var" / "oauth2-token.json"

    def login(self) -> Run:
        """``outreach auth login`` with the server approving the device code at once."""
        self.server.auto_approve = self.user
        try:
            return self.cli("auth", "login")
        finally:
            self.server.auto_approve = None

    def start(self) -> DaemonProcess:
        log = self.tmp_path / f"daemon{len(self.daemons)}.log"
        env = {**FAST, **{f"OUTREACH_{k}": v for k, v in RELAXED_SENDING.items()}}
        daemon = start_daemon(self.config, log, env)
        self.daemons.append(daemon)
        return daemon

    def import_contacts(self, count: int, name: str = "contacts.csv") -> list[str]:
        path = self.tmp_path / name
        emails = write_contacts(path, count)
        result = self.cli("contacts", "import", str(path), "--update")
        assert result.exit_code == 0, result.output
        return emails

    def no_token_in(self, text: str) -> None:
        leaked = [t for t in self.server.issued if t in text]
        assert not leaked, f"{len(leaked)} token(s) in the output"


def _oauth2_config(
    config: Path, server: OAuth2Server, dovecot: Dovecot, sink: SmtpServer, user: str
) -> None:
    edit_config(
        config,
        {
            "smtp.host": "127.0.0.1",
            "smtp.port": sink.port,
            "smtp.username": user,
            "imap.host": "127.0.0.1",
            "imap.port": dovecot.imaps_port,
            "imap.username": user,
            "templates.dir": str(ROOT / "templates"),
            "smtp.auth": "oauth2",
            "imap.auth": "oauth2",
        },
        add={
            "smtp.ca_file": str(dovecot.cert),
            "imap.ca_file": str(dovecot.cert),
            "oauth2": {
                "provider": "custom",
                "client_id": "outreach-test",
                "token_url": server.token_url,
                "device_authorization_url": server.device_authorization_url,
                "scopes": ["mail"],
                "ca_file": str(server.ca_file),
            },
        },
        remove=["rules"],
    )


@pytest.fixture
def mailbox(
    config_file: Path,
    oauth2_server: OAuth2Server,
    oauth2_dovecot: Dovecot,
    cli: Callable[..., Run],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Iterator[Mailbox]:
    """A config signing in with OAuth2; an SMTP sink taking XOAUTH2 (it keeps what it gets)."""
    # One Dovecot user per test: a revocation in one test must not reach another.
    number = 10 + abs(hash(request.node.name)) % 10
    user, _password = oauth2_dovecot.user(number)
    oauth2_dovecot.empty(user)
    sink = start_smtp(
        oauth2_dovecot.cert, oauth2_dovecot.directory / "key.pem", oauth2=oauth2_server.username_for
    )
    _oauth2_config(config_file, oauth2_server, oauth2_dovecot, sink, user)
    for key, value in RELAXED_SENDING.items():
        monkeypatch.setenv(f"OUTREACH_{key}", value)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    box = Mailbox(config_file, user, oauth2_server, oauth2_dovecot, sink, cli, tmp_path)
    lifetime = oauth2_server.access_lifetime
    yield box
    oauth2_server.access_lifetime = lifetime
    oauth2_server.auto_approve = None
    for daemon in box.daemons:
        daemon.close()
    sink.stop()


class TestLogin:
    def test_device_flow_keeps_the_sign_in_private_and_the_servers_accept_it(
        self, mailbox: Mailbox
    ) -> None:
        before = mailbox.cli("auth", "status")
        assert before.exit_code == 1 and "not signed in: run outreach auth login" in before.stdout

        done = mailbox.login()
        assert done.exit_code == 0, done.output
        assert "enter the code" in done.stderr  # what the person must do
        assert f"Signed in as {mailbox.user}" in done.stdout
        assert stat.S_IMODE(mailbox.token_file.stat().st_mode) == 0o600

        status = mailbox.cli("auth", "status", "--json")
        assert status.exit_code == 0, status.output
        shown = json.loads(status.stdout)
        assert shown["state"] == "signed in"
        assert shown["account"] == mailbox.user
        assert shown["scopes"] == ["mail"]
        assert shown["access_token_expires_at"] and shown["kept_in"] == str(mailbox.token_file)

        check = mailbox.cli("config", "check", "--connect")
        assert check.exit_code == 0, check.output
        assert f"signed in as {mailbox.user} (OAuth2)" in check.stdout  # SMTP
        assert f"logged in as {mailbox.user} (OAuth2); INBOX" in check.stdout  # IMAP
        for run in (before, done, status, check):
            mailbox.no_token_in(run.output)

    def test_microsoft_device_flow_through_msal(
        self, mailbox: Mailbox, oauth2_server: OAuth2Server
    ) -> None:
        edit_config(
            mailbox.config,
            {"oauth2": {
                "provider": "microsoft",
                "client_id": "11111111-2222-3333-4444-555555555555",
                "authority": oauth2_server.base_url,
                "tenant": oauth2_server.tenant,
                "scopes": ["https://outlook.office.com/IMAP.AccessAsUser.All"],
                "ca_file": str(oauth2_server.ca_file),
            }},
        )  # fmt: skip
        done = mailbox.login()
        assert done.exit_code == 0, done.output
        assert f"Signed in as {mailbox.user}" in done.stdout  # from msal's id_token claims
        settings = load_config(mailbox.config)
        tokens = sign_in(settings)
        assert tokens is not None
        oauth2_server.access_lifetime = 3600
        assert "(OAuth2)" in check_imap(settings.imap, tokens)
        # A refresh through msal (the token file says the token expired).
        sign = tokens.file.read("microsoft", settings.oauth2.client_id if settings.oauth2 else "")
        assert sign is not None
        sign.expires_at = 0
        tokens.file.write(sign)
        refreshes = oauth2_server.token_requests["refresh_token"]
        assert "(OAuth2)" in check_smtp(settings.smtp, tokens)
        assert oauth2_server.token_requests["refresh_token"] == refreshes + 1

    def test_a_wrong_microsoft_tenant_is_named(
        self, mailbox: Mailbox, oauth2_server: OAuth2Server
    ) -> None:
        edit_config(
            mailbox.config,
            {"oauth2": {
                "provider": "microsoft",
                "client_id": "11111111-2222-3333-4444-555555555555",
                "authority": oauth2_server.base_url,
                "tenant": "no-such-tenant",
                "ca_file": str(oauth2_server.ca_file),
            }},
        )  # fmt: skip
        refused = mailbox.cli("auth", "login")
        assert refused.exit_code == 1
        assert "the provider refused the sign-in: invalid_tenant" in refused.stderr
        assert not mailbox.token_file.exists()

    @pytest.mark.parametrize("provider", ["custom", "google"])
    def test_browser_flow_with_pkce_and_a_loopback_redirect(
        self,
        mailbox: Mailbox,
        oauth2_server: OAuth2Server,
        provider: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Google's installed-app flow (its endpoints pointed at the test server; it needs
        the client secret) and a custom provider's."""
        edit_config(
            mailbox.config,
            {"oauth2.device_authorization_url": "", "oauth2.provider": provider},
        )
        if provider == "google":
            refused = mailbox.cli("auth", "login")
            assert refused.exit_code == 1
            assert "need their client secret" in refused.stderr
            monkeypatch.setenv("OUTREACH_OAUTH2__CLIENT_SECRET", "GOCSPX-test-secret")
        edit_config(
            mailbox.config, {}, add={"oauth2.authorization_url": oauth2_server.authorization_url}
        )
        settings = load_config(mailbox.config)
        assert settings.oauth2 is not None
        said: list[str] = []

        def browser(url: str) -> None:
            # What the person's browser does: sign in, consent, follow the redirect home.
            redirect = oauth2_server.consent(url, mailbox.user)
            requests.get(redirect, timeout=10).raise_for_status()

        file = TokenFile(settings.state_directory)
        signed = log_in(settings.oauth2, mailbox.user, file, say=said.append, browser=browser)
        assert signed.refresh_token and file.path.exists()
        assert oauth2_server.token_requests["authorization_code"] >= 1
        tokens = sign_in(settings)
        assert tokens is not None
        assert "(OAuth2)" in check_imap(settings.imap, tokens)

    def test_no_browser_reads_back_the_pasted_address(
        self, mailbox: Mailbox, oauth2_server: OAuth2Server
    ) -> None:
        edit_config(mailbox.config, {"oauth2.device_authorization_url": ""})
        edit_config(
            mailbox.config, {}, add={"oauth2.authorization_url": oauth2_server.authorization_url}
        )
        settings = load_config(mailbox.config)
        assert settings.oauth2 is not None
        said: list[str] = []

        def paste(_prompt: str) -> str:
            url = next(line for line in "\n".join(said).split() if line.startswith("https://"))
            return oauth2_server.consent(url, mailbox.user)  # the address the browser ended on

        file = TokenFile(settings.state_directory)
        log_in(settings.oauth2, mailbox.user, file, say=said.append, paste=paste)
        assert file.path.exists()
        # A pasted address from elsewhere is refused by name, and nothing is kept.
        file.remove()
        from outreach.signin.login import SignInFailed

        with pytest.raises(SignInFailed, match="not the address the browser ended on"):
            log_in(settings.oauth2, mailbox.user, file, say=said.append, paste=lambda _: "oops")
        assert not file.path.exists()

    def test_a_refresh_token_from_a_systemd_credential(
        self, mailbox: Mailbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        assert mailbox.login().exit_code == 0
        saved = json.loads(mailbox.token_file.read_text())
        mailbox.token_file.unlink()
        credentials = tmp_path / "credentials"
        credentials.mkdir()
        (credentials / "oauth2_refresh_token").write_text(saved["refresh_token"] + "\n")
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
        check = mailbox.cli("config", "check", "--connect")
        assert check.exit_code == 0, check.output
        assert json.loads(mailbox.token_file.read_text())["access_token"]  # kept, refreshed
        status = mailbox.cli("auth", "status")
        assert "seeded from the credential" in status.stdout
        mailbox.no_token_in(check.output + status.output)

    def test_logout_forgets_and_logins_fail_by_name(self, mailbox: Mailbox) -> None:
        assert mailbox.login().exit_code == 0
        out = mailbox.cli("auth", "logout")
        assert out.exit_code == 0 and "Signed out" in out.stdout
        assert not mailbox.token_file.exists()
        check = mailbox.cli("config", "check", "--connect")
        assert check.exit_code == 2
        assert "not signed in: run outreach auth login" in check.stderr


class TestDaemon:
    def test_thirty_second_tokens_for_minutes(
        self, mailbox: Mailbox, oauth2_server: OAuth2Server
    ) -> None:
        """The daemon runs on 30-second tokens for 2.5 minutes: contacts imported as it runs
        are each sent once, replies are read, no login fails, and tokens are refreshed."""
        oauth2_server.access_lifetime = 30
        assert mailbox.login().exit_code == 0
        refreshes = oauth2_server.token_requests["refresh_token"]
        daemon = mailbox.start()
        daemon.wait_ready()
        sent: list[str] = []
        replied = 0
        deadline = time.monotonic() + 150
        batch = 0
        while time.monotonic() < deadline:
            emails = [f"b{batch}n{i}@org{batch}x{i}.example.com" for i in range(3)]
            path = mailbox.tmp_path / f"batch{batch}.csv"
            rows = "".join(f"{e},P{i},Q{i},psychiatrist\n" for i, e in enumerate(emails))
            path.write_text("email,first_name,last_name,segment\n" + rows)
            assert mailbox.cli("contacts", "import", str(path)).exit_code == 0
            daemon.wait_until(
                f"batch {batch} sent",
                lambda emails=emails: all(
                    ledger_states(mailbox.config).get((e, 1)) == "sent" for e in emails
                ),
                timeout=30,
            )
            sent += emails
            # The first of each batch answers; the watcher must read it.
            envelope = next(e for e in mailbox.sink.received if e.rcpt_tos[0] == emails[0])
            reply = _reply_to(envelope.message, emails[0], mailbox.user)
            mailbox.dovecot.deliver(mailbox.user, reply, sender=emails[0])
            replied += 1
            answered = emails[0]
            daemon.wait_until(
                f"reply {batch} read",
                lambda answered=answered: _stage(mailbox, answered) == "replied",  # type: ignore[misc]
                timeout=30,
            )
            batch += 1
            time.sleep(max(0.0, min(10.0, deadline - time.monotonic())))
        code, _took = daemon.stop(signal.SIGTERM)
        assert code == 0, daemon.output()
        counts: dict[str, int] = {}
        for envelope in mailbox.sink.received:
            counts[envelope.rcpt_tos[0]] = counts.get(envelope.rcpt_tos[0], 0) + 1
        assert all(counts.get(e) == 1 for e in sent), "each step sent exactly once"
        assert replied >= 4
        assert oauth2_server.token_requests["refresh_token"] - refreshes >= 4
        log = daemon.output()
        assert "login refused" not in log and "sign-in" not in log, log
        mailbox.no_token_in(log)

    def test_a_revoked_sign_in_waits_loses_nothing_and_resumes_after_login(
        self, mailbox: Mailbox, oauth2_server: OAuth2Server
    ) -> None:
        oauth2_server.access_lifetime = 4
        assert mailbox.login().exit_code == 0
        first = mailbox.import_contacts(2)
        daemon = mailbox.start()
        daemon.wait_ready()
        daemon.wait_until("first sends", lambda: len(mailbox.sink.received) == 2)

        oauth2_server.revoke(mailbox.user)
        refreshes = oauth2_server.token_requests["refresh_token"]
        later = [f"later{i}@later{i}.example.com" for i in range(2)]
        path = mailbox.tmp_path / "later.csv"
        path.write_text(
            "email,first_name,last_name,segment\n"
            + "".join(f"{e},L{i},M{i},psychiatrist\n" for i, e in enumerate(later))
        )
        assert mailbox.cli("contacts", "import", str(path)).exit_code == 0
        expired = "sign-in expired: run outreach auth login"
        daemon.wait_until("STATUS says so", lambda: expired in daemon.notify.statuses(), 30)
        status = mailbox.cli("status")
        assert expired in status.stdout
        # A reply arrives meanwhile: the watcher may still hold its session, or wait.
        envelope = next(e for e in mailbox.sink.received if e.rcpt_tos[0] == first[0])
        mailbox.dovecot.deliver(mailbox.user, _reply_to(envelope.message, first[0], mailbox.user))
        time.sleep(8)  # several dispatch passes with the refusal
        assert len(mailbox.sink.received) == 2, "nothing sent while signed out"
        # The refused refresh token was tried once, not in a loop.
        assert oauth2_server.token_requests["refresh_token"] - refreshes <= 2
        assert daemon.process.poll() is None, "the daemon keeps running"
        log = daemon.output()
        assert log.count("sign-in expired for") == 1, log

        started = time.monotonic()
        assert mailbox.login().exit_code == 0
        daemon.wait_until("the later contacts sent", lambda: len(mailbox.sink.received) == 4, 60)
        daemon.wait_until("the reply read", lambda: _stage(mailbox, first[0]) == "replied", 60)
        assert time.monotonic() - started < 60
        daemon.wait_until(
            "STATUS back to watching",
            lambda: daemon.notify.statuses()[-1].startswith("watching"),
            30,
        )
        assert sorted(e.rcpt_tos[0] for e in mailbox.sink.received[2:]) == sorted(later)
        code, _ = daemon.stop(signal.SIGTERM)
        assert code == 0
        mailbox.no_token_in(daemon.output() + status.output)

    def test_starts_signed_out_and_waits(self, mailbox: Mailbox) -> None:
        """Never signed in: the daemon starts anyway (it does not exit for systemd to restart
        in a loop), says what to do, and begins once someone signs in."""
        emails = mailbox.import_contacts(1)
        daemon = mailbox.start()
        daemon.wait_ready()
        assert "not signed in: run outreach auth login" in daemon.notify.statuses()[-1]
        assert mailbox.login().exit_code == 0
        daemon.wait_until("sent after login", lambda: len(mailbox.sink.received) == 1, 60)
        assert mailbox.sink.received[0].rcpt_tos == emails
        assert daemon.stop(signal.SIGTERM)[0] == 0


class TestSentFolder:
    def test_where_the_provider_files_sent_mail_the_crash_reconciliation_looks_there(
        self, mailbox: Mailbox
    ) -> None:
        """Gmail and Exchange file SMTP-submitted mail in Sent themselves: outreach adds no
        copy, and a send interrupted after DATA is found there by its Message-ID."""
        edit_config(mailbox.config, {}, add={"imap.server_saves_sent": True})
        assert mailbox.login().exit_code == 0
        emails = mailbox.import_contacts(1)
        sent = mailbox.cli("send-due")
        assert sent.exit_code == 0, sent.output
        message = mailbox.sink.received[0].message
        # As the provider would: its own copy in the folder marked \Sent.
        from imapclient import IMAPClient

        from outreach.mail.tls import tls_context

        settings = load_config(mailbox.config)
        tokens = sign_in(settings)
        assert tokens is not None
        with IMAPClient("127.0.0.1", port=mailbox.dovecot.imaps_port,
                        ssl_context=tls_context(mailbox.dovecot.cert)) as client:  # fmt: skip
            client.oauth2_login(mailbox.user, tokens.token())
            assert client.folder_status("Sent", [b"MESSAGES"])[b"MESSAGES"] == 0  # no copy
            client.append("Sent", message.as_bytes())
        # The send is made to look interrupted: `sending` again, as after a crash.
        from sqlalchemy import update

        from outreach.store.database import open_store
        from outreach.store.models import OutboxRow

        store = open_store(settings.database_url)
        with store.session() as session:
            session.execute(update(OutboxRow).values(state="sending"))
            session.commit()
        store.close()
        again = mailbox.cli("send-due")
        assert again.exit_code == 0, again.output
        assert ledger_states(mailbox.config)[(emails[0], 1)] == "sent"
        assert len(mailbox.sink.received) == 1


class TestPresets:
    @pytest.mark.parametrize("provider", sorted(PRESETS))
    def test_every_preset_resolves_and_is_shown(
        self, provider: str, config_file: Path, cli: Callable[..., Run]
    ) -> None:
        preset = PRESETS[provider]
        edit_config(
            config_file,
            {"mailbox.provider": provider},
            remove=["smtp.host", "smtp.port", "smtp.security", "imap.host", "imap.port",
                    "imap.security", "smtp.auth", "imap.auth"],
        )  # fmt: skip
        if preset.auth == "oauth2":
            edit_config(config_file, {}, add={"oauth2": {"client_id": "abc-123"}})
        check = cli("config", "check")
        assert check.exit_code == 0, check.output
        assert f"mailbox:  {provider} (preset)" in check.stdout
        smtp = f"smtp:     {preset.smtp_host}:{preset.smtp_port} ({preset.smtp_security}); "
        assert smtp + ("auth oauth2" if preset.auth == "oauth2" else "password") in check.stdout
        assert f"imap:     {preset.imap_host}:993 (tls)" in check.stdout
        settings = load_config(config_file)
        assert settings.imap.server_saves_sent is preset.server_saves_sent
        if preset.oauth2 is not None and preset.auth == "oauth2":
            assert settings.oauth2 is not None and settings.oauth2.provider == preset.oauth2

    def test_keys_written_win_over_the_preset(self, config_file: Path) -> None:
        edit_config(config_file, {"smtp.host": "smtp-relay.gmail.com", "smtp.port": 587,
                                  "mailbox.provider": "gmail"},
                    add={})  # fmt: skip
        settings = load_config(config_file)
        assert (settings.smtp.host, settings.smtp.port) == ("smtp-relay.gmail.com", 587)
        assert settings.smtp.security == "starttls"  # the file's, not the preset's "tls"
        assert settings.imap.host == "imap.example.com"  # the file's

    def test_oauth2_without_a_client_id_is_named(
        self, config_file: Path, cli: Callable[..., Run]
    ) -> None:
        edit_config(config_file, {"mailbox.provider": "microsoft365"},
                    remove=["smtp.host", "imap.host", "smtp.auth", "imap.auth"])  # fmt: skip
        check = cli("config", "check")
        assert check.exit_code == 2
        assert 'oauth2: smtp.auth is "oauth2", so an [oauth2] table' in check.stderr
        edit_config(config_file, {}, add={"oauth2": {"provider": "custom", "client_id": "x"}})
        check = cli("config", "check")
        assert "oauth2.token_url: a custom provider needs its token endpoint" in check.stderr
        os.environ.pop("OUTREACH_OAUTH2__CLIENT_SECRET", None)

    def test_a_client_secret_in_the_file_is_refused(
        self, config_file: Path, cli: Callable[..., Run]
    ) -> None:
        edit_config(config_file, {}, add={"oauth2": {"client_id": "x", "client_secret": "s3cr3t!"}})
        check = cli("config", "check")
        assert check.exit_code == 2
        assert "oauth2.client_secret: secrets don't belong in the config file" in check.stderr
        assert "s3cr3t!" not in check.output

    def test_init_writes_the_provider(self, tmp_path: Path, cli: Callable[..., Run]) -> None:
        made = cli(
            "init", str(tmp_path / "p"), "--non-interactive", "--practice-name", "P",
            "--therapist", "T", "--ideal-client", "adults", "--method", "m", "--result", "r",
            "--postal-address", "1 Main St", "--sender", "t@calmharbor.example.com",
            "--provider", "microsoft365", config=None,
        )  # fmt: skip
        assert made.exit_code == 0, made.output
        assert "auth login" in made.stdout
        config = tmp_path / "p" / "config" / "outreach.toml"
        text = config.read_text()
        assert 'provider = "microsoft365"' in text and "smtp.example.com" not in text
        check = cli("config", "check", config=config)
        assert "oauth2.client_id: the client ID of the app registration" in check.stderr


class TestRefusals:
    """The providers' own words for a refused login become one line with the fix."""

    def test_microsoft_basic_authentication_disabled(self) -> None:
        said = login_problem(
            "maya@calmharbor.com",
            "password",
            "535 5.7.139 Authentication unsuccessful, basic authentication is disabled. "
            "[BN9PR03CA0123.namprd03.prod.outlook.com]",
        )
        assert 'set auth = "oauth2"' in said and "outreach auth login" in said

    def test_microsoft_smtp_auth_disabled_for_the_tenant(self) -> None:
        said = login_problem(
            "maya@calmharbor.com",
            "oauth2",
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled "
            "for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.",
        )
        assert "Authenticated SMTP" in said

    def test_gmail_wants_an_app_password(self) -> None:
        said = login_problem(
            "maya@gmail.com",
            "password",
            "534 5.7.9 Application-specific password required. For more information, go to "
            "https://support.google.com/mail/?p=InvalidSecondFactor",
        )
        assert "app password" in said

    def test_an_xoauth2_challenge_is_decoded(self) -> None:
        # Gmail's answer to a token without the mail scope: a base64 JSON challenge, then 535.
        challenge = (
            "eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29v"
            "Z2xlLmNvbS8ifQ=="
        )
        said = login_problem("maya@gmail.com", "oauth2", f"334 {challenge}")
        assert '"status":"400"' in said and "mail scopes" in said

    def test_a_real_refusal_over_smtp_names_the_account(
        self, mailbox: Mailbox, oauth2_server: OAuth2Server
    ) -> None:
        assert mailbox.login().exit_code == 0
        # The token is fine for the provider but the mail server refuses it (another user's).
        edit_config(mailbox.config, {"smtp.username": "someone-else@example.test"})
        check = mailbox.cli("config", "check", "--connect")
        assert check.exit_code == 2
        assert "login refused for someone-else@example.test" in check.stderr
        assert "outreach auth status" in check.stderr
        mailbox.no_token_in(check.output)


def _reply_to(original: Any, sender: str, to: str) -> bytes:
    message_id = original.get("Message-ID")
    subject = original.get("Subject")
    return (
        f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: Re: {subject}\r\n"
        f"In-Reply-To: {message_id}\r\nReferences: {message_id}\r\n"
        f"Message-ID: <r{time.time_ns()}@example.com>\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\n"
        "\r\nThanks, happy to talk next week.\r\n"
    ).encode()


def _stage(mailbox: Mailbox, email: str) -> str:
    shown = mailbox.cli("contacts", "show", email, "--json")
    return str(json.loads(shown.stdout)["stage"]) if shown.exit_code == 0 else ""
