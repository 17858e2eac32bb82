"""The OAuth2 test servers work with the real client libraries (no product code here).

msal and authlib get tokens from ``oauth2_server``; IMAPClient and aiosmtplib log in with
XOAUTH2 to ``oauth2_dovecot`` and ``oauth2_smtp``, which check the tokens with that server.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiosmtplib
import msal
import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from tests.mailstack import Dovecot, OAuth2Handler, SmtpServer
from tests.oauth2_server import DEVICE_GRANT, OAuth2Error, OAuth2Server

M365_SCOPES = [
    "https://outlook.office.com/IMAP.AccessAsUser.All",
    "https://outlook.office.com/SMTP.Send",
]
GOOGLE_SCOPE = "https://mail.google.com/"
REDIRECT_URI = "http://127.0.0.1:8765/"  # the loopback redirect of a desktop app; never opened

pytestmark = pytest.mark.usefixtures("without_ca_bundle_env")


def user(n: int) -> str:
    return f"user{n:02d}@example.test"


@pytest.fixture
def ca_file(oauth2_server: OAuth2Server) -> Path:
    """The one CA file for the OAuth2 server, ``oauth2_dovecot`` and ``oauth2_smtp``."""
    return oauth2_server.ca_file


@pytest.fixture
def msal_app(oauth2_server: OAuth2Server, ca_file: Path) -> Iterator[msal.PublicClientApplication]:
    app = msal.PublicClientApplication(
        "outreach-test-client",
        authority=f"{oauth2_server.base_url}/{oauth2_server.tenant}",
        instance_discovery=False,
        verify=str(ca_file),
    )
    yield app
    app.http_client.close()  # msal's own requests.Session


@pytest.fixture
def google(ca_file: Path) -> Iterator[OAuth2Session]:
    """authlib's session as a desktop app uses it: a (non-secret) client secret, PKCE S256."""
    with OAuth2Session(
        client_id="desktop-client.apps.example.test",
        client_secret="not-really-secret",  # noqa: S106  # desktop apps' secrets are public
        scope=GOOGLE_SCOPE,
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
    ) as session:
        session.verify = str(ca_file)
        yield session


@pytest.fixture
def short_tokens(oauth2_server: OAuth2Server) -> Iterator[OAuth2Server]:
    """Access tokens live one second during the test."""
    before = oauth2_server.access_lifetime
    oauth2_server.access_lifetime = 1
    yield oauth2_server
    oauth2_server.access_lifetime = before


def sign_in(oauth2_server: OAuth2Server, session: requests.Session, username: str) -> dict:
    """A whole RFC 8628 device sign-in on the generic endpoints; returns the token response."""
    flow = session.post(
        oauth2_server.device_authorization_url,
        data={"client_id": "device-client", "scope": "mail"},
    ).json()
    oauth2_server.approve_device(flow["user_code"], username)
    answer = session.post(
        oauth2_server.token_url,
        data={"grant_type": DEVICE_GRANT, "device_code": flow["device_code"]},
        auth=("device-client", ""),
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def wait_until_expired(oauth2_server: OAuth2Server, access_token: str) -> None:
    deadline = time.monotonic() + 10
    while oauth2_server.username_for(access_token) is not None:
        assert time.monotonic() < deadline, "the token does not expire"
        time.sleep(0.05)


@pytest.fixture
def http(ca_file: Path) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.verify = str(ca_file)
        yield session


# --- msal (Microsoft 365) ---------------------------------------------------------------------


class TestMsal:
    def test_device_flow_names_the_account(
        self, oauth2_server: OAuth2Server, msal_app: msal.PublicClientApplication
    ) -> None:
        flow = msal_app.initiate_device_flow(scopes=M365_SCOPES)
        assert flow["user_code"] in flow["message"]
        assert flow["interval"] == 1
        oauth2_server.approve_device(flow["user_code"], user(1))

        result = msal_app.acquire_token_by_device_flow(flow)

        assert "error" not in result, result
        assert result["id_token_claims"]["preferred_username"] == user(1)
        assert result["scope"].split() == M365_SCOPES
        assert len(result["access_token"]) > 1000  # JWT-shaped, as long as Microsoft's
        assert oauth2_server.username_for(result["access_token"]) == user(1)
        assert {a["username"] for a in msal_app.get_accounts()} == {user(1)}
        assert result["access_token"] in oauth2_server.issued
        assert result["refresh_token"] in oauth2_server.issued

    def test_device_flow_polls_until_the_user_approves(
        self, oauth2_server: OAuth2Server, msal_app: msal.PublicClientApplication
    ) -> None:
        flow = msal_app.initiate_device_flow(scopes=M365_SCOPES)
        before = oauth2_server.token_requests[DEVICE_GRANT]
        approve = threading.Timer(0.3, oauth2_server.approve_device, (flow["user_code"], user(2)))
        approve.start()
        try:
            result = msal_app.acquire_token_by_device_flow(flow)  # pending, 1 s, then tokens
        finally:
            approve.join()
        assert result["id_token_claims"]["preferred_username"] == user(2)
        assert oauth2_server.token_requests[DEVICE_GRANT] - before == 2

    def test_device_flow_ends_when_the_code_expires(
        self, oauth2_server: OAuth2Server, msal_app: msal.PublicClientApplication
    ) -> None:
        before = oauth2_server.device_code_lifetime
        oauth2_server.device_code_lifetime = 0.5
        try:
            flow = msal_app.initiate_device_flow(scopes=M365_SCOPES)
            result = msal_app.acquire_token_by_device_flow(flow)  # polls until expired_token
        finally:
            oauth2_server.device_code_lifetime = before
        assert result["error"] == "expired_token"

    def test_refresh_token_rotates_until_revoked(
        self, oauth2_server: OAuth2Server, msal_app: msal.PublicClientApplication
    ) -> None:
        oauth2_server.auto_approve = user(3)
        try:
            first = msal_app.acquire_token_by_device_flow(
                msal_app.initiate_device_flow(scopes=M365_SCOPES)
            )
        finally:
            oauth2_server.auto_approve = None

        second = msal_app.acquire_token_by_refresh_token(first["refresh_token"], M365_SCOPES)

        assert "error" not in second, second
        assert second["refresh_token"] != first["refresh_token"]
        assert second["access_token"] != first["access_token"]
        assert second["id_token_claims"]["preferred_username"] == user(3)
        assert oauth2_server.username_for(second["access_token"]) == user(3)
        # The old refresh token still works (with another scope list: msal answers an
        # identical request that failed with HTTP 400 from its own cache for 60 s).
        again = msal_app.acquire_token_by_refresh_token(first["refresh_token"], M365_SCOPES[:1])
        assert "access_token" in again

        oauth2_server.revoke(user(3))

        revoked = msal_app.acquire_token_by_refresh_token(second["refresh_token"], M365_SCOPES)
        assert revoked["error"] == "invalid_grant"
        assert oauth2_server.username_for(second["access_token"]) is None

    def test_silent_refresh_of_a_short_lived_token(
        self,
        short_tokens: OAuth2Server,
        msal_app: msal.PublicClientApplication,
    ) -> None:
        short_tokens.auto_approve = user(4)
        try:
            first = msal_app.acquire_token_by_device_flow(
                msal_app.initiate_device_flow(scopes=M365_SCOPES)
            )
        finally:
            short_tokens.auto_approve = None
        (account,) = msal_app.get_accounts()

        # msal refreshes any token that expires within five minutes, so with short tokens
        # acquire_token_silent always asks the token endpoint.
        silent = msal_app.acquire_token_silent(M365_SCOPES, account=account)

        assert silent is not None and silent["access_token"] != first["access_token"]
        assert short_tokens.username_for(silent["access_token"]) == user(4)

    def test_an_unknown_tenant_is_refused(self, oauth2_server: OAuth2Server, ca_file: Path) -> None:
        with pytest.raises(ValueError, match="Unable to get authority configuration"):
            msal.PublicClientApplication(
                "outreach-test-client",
                authority=f"{oauth2_server.base_url}/no-such-tenant",
                instance_discovery=False,
                verify=str(ca_file),
            )


# --- authlib (Google and custom providers) ----------------------------------------------------


class TestAuthorizationCode:
    def test_pkce_sign_in_and_refresh(
        self, oauth2_server: OAuth2Server, google: OAuth2Session
    ) -> None:
        verifier = generate_token(48)
        url, state = google.create_authorization_url(
            oauth2_server.authorization_url, code_verifier=verifier, access_type="offline"
        )
        redirect = oauth2_server.consent(url, user(5))
        assert redirect.startswith(REDIRECT_URI)
        assert parse_qs(urlsplit(redirect).query)["state"] == [state]

        token = google.fetch_token(
            oauth2_server.token_url, authorization_response=redirect, code_verifier=verifier
        )

        assert token["token_type"] == "Bearer"
        assert token["scope"] == GOOGLE_SCOPE
        assert "id_token" not in token  # only on the Microsoft-shaped endpoints
        assert oauth2_server.username_for(token["access_token"]) == user(5)

        refreshed = google.refresh_token(
            oauth2_server.token_url, refresh_token=token["refresh_token"]
        )
        assert refreshed["refresh_token"] != token["refresh_token"]
        assert oauth2_server.username_for(refreshed["access_token"]) == user(5)

        oauth2_server.revoke(user(5))
        with pytest.raises(OAuthError) as refused:
            google.refresh_token(oauth2_server.token_url, refresh_token=refreshed["refresh_token"])
        assert refused.value.error == "invalid_grant"

    def test_consent_without_pkce_is_refused(
        self, oauth2_server: OAuth2Server, google: OAuth2Session
    ) -> None:
        url, _state = google.create_authorization_url(oauth2_server.authorization_url)
        with pytest.raises(OAuth2Error, match="code_challenge"):
            oauth2_server.consent(url, user(5))

    def test_a_wrong_code_verifier_is_refused(
        self, oauth2_server: OAuth2Server, google: OAuth2Session
    ) -> None:
        url, _state = google.create_authorization_url(
            oauth2_server.authorization_url, code_verifier=generate_token(48)
        )
        redirect = oauth2_server.consent(url, user(5))
        with pytest.raises(OAuthError) as refused:
            google.fetch_token(
                oauth2_server.token_url,
                authorization_response=redirect,
                code_verifier=generate_token(48),
            )
        assert refused.value.error == "invalid_grant"

    def test_a_browser_gets_redirected(
        self, oauth2_server: OAuth2Server, google: OAuth2Session, http: requests.Session
    ) -> None:
        verifier = generate_token(48)
        url, _state = google.create_authorization_url(
            oauth2_server.authorization_url, code_verifier=verifier, login_hint=user(6)
        )
        answer = http.get(url, allow_redirects=False)
        assert answer.status_code == 302
        token = google.fetch_token(
            oauth2_server.token_url,
            authorization_response=answer.headers["Location"],
            code_verifier=verifier,
        )
        assert oauth2_server.username_for(token["access_token"]) == user(6)


class TestDeviceCode:
    def test_rfc8628_poll(self, oauth2_server: OAuth2Server, ca_file: Path) -> None:
        with OAuth2Session(client_id="tv-client", scope="mail") as session:
            session.verify = str(ca_file)
            flow = session.post(
                oauth2_server.device_authorization_url,
                data={"client_id": "tv-client", "scope": "mail"},
                withhold_token=True,  # no token yet: that is what this request is for
            ).json()
            assert flow["verification_uri_complete"].endswith(flow["user_code"])
            with pytest.raises(OAuthError) as pending:
                session.fetch_token(
                    oauth2_server.token_url,
                    grant_type=DEVICE_GRANT,
                    device_code=flow["device_code"],
                )
            assert pending.value.error == "authorization_pending"

            oauth2_server.approve_device(flow["user_code"].lower(), user(7))  # as typed
            token = session.fetch_token(
                oauth2_server.token_url, grant_type=DEVICE_GRANT, device_code=flow["device_code"]
            )
            assert token["scope"] == "mail"
            assert oauth2_server.username_for(token["access_token"]) == user(7)

            with pytest.raises(OAuthError) as used:  # a device code is good for one sign-in
                session.fetch_token(
                    oauth2_server.token_url,
                    grant_type=DEVICE_GRANT,
                    device_code=flow["device_code"],
                )
            assert used.value.error == "invalid_grant"

    def test_expired_device_code(self, oauth2_server: OAuth2Server, http: requests.Session) -> None:
        before = oauth2_server.device_code_lifetime
        oauth2_server.device_code_lifetime = 0.2
        try:
            flow = http.post(oauth2_server.device_authorization_url, data={"client_id": "c"}).json()
            time.sleep(0.3)
            answer = http.post(
                oauth2_server.token_url,
                data={"grant_type": DEVICE_GRANT, "device_code": flow["device_code"]},
                auth=("c", ""),
            )
        finally:
            oauth2_server.device_code_lifetime = before
        assert answer.status_code == 400
        assert answer.json()["error"] == "expired_token"
        with pytest.raises(OAuth2Error, match="expired"):
            oauth2_server.approve_device(flow["user_code"], user(7))


# --- IMAP (Dovecot) ---------------------------------------------------------------------------


def imap(dovecot: Dovecot, ca_file: Path) -> IMAPClient:
    return IMAPClient(
        dovecot.host,
        dovecot.imaps_port,
        ssl_context=ssl.create_default_context(cafile=str(ca_file)),
        timeout=10,
    )


class TestImap:
    @pytest.mark.parametrize("provider", ["microsoft", "generic"])
    def test_xoauth2_login_with_a_fresh_token(
        self,
        provider: str,
        oauth2_server: OAuth2Server,
        oauth2_dovecot: Dovecot,
        ca_file: Path,
        msal_app: msal.PublicClientApplication,
        http: requests.Session,
    ) -> None:
        if provider == "microsoft":  # a long JWT-shaped token
            oauth2_server.auto_approve = user(8)
            try:
                token = msal_app.acquire_token_by_device_flow(
                    msal_app.initiate_device_flow(scopes=M365_SCOPES)
                )["access_token"]
            finally:
                oauth2_server.auto_approve = None
        else:
            token = sign_in(oauth2_server, http, user(8))["access_token"]
        before = oauth2_server.introspection_requests

        with imap(oauth2_dovecot, ca_file) as client:
            assert b"AUTH=XOAUTH2" in client.capabilities()
            client.oauth2_login(user(8), token)
            assert b"EXISTS" in client.select_folder("INBOX")

        assert oauth2_server.introspection_requests == before + 1

    def test_oauthbearer_login(
        self,
        oauth2_server: OAuth2Server,
        oauth2_dovecot: Dovecot,
        ca_file: Path,
        http: requests.Session,
    ) -> None:
        token = sign_in(oauth2_server, http, user(8))["access_token"]
        with imap(oauth2_dovecot, ca_file) as client:
            client.oauthbearer_login(user(8), token)

    def test_revoked_expired_and_foreign_tokens_are_refused(
        self,
        short_tokens: OAuth2Server,
        oauth2_dovecot: Dovecot,
        ca_file: Path,
        http: requests.Session,
    ) -> None:
        expiring = sign_in(short_tokens, http, user(10))["access_token"]
        with imap(oauth2_dovecot, ca_file) as client:
            client.oauth2_login(user(10), expiring)  # still fresh
        revoked = sign_in(short_tokens, http, user(9))["access_token"]
        short_tokens.revoke(user(9))
        foreign = sign_in(short_tokens, http, user(11))["access_token"]

        # (Dovecot answers each failed login after about half a second.)
        with imap(oauth2_dovecot, ca_file) as client, pytest.raises(LoginError):
            client.oauth2_login(user(9), revoked)
        with imap(oauth2_dovecot, ca_file) as client, pytest.raises(LoginError):
            client.oauth2_login(user(10), foreign)  # user11's token
        with imap(oauth2_dovecot, ca_file) as client, pytest.raises(LoginError):
            client.oauth2_login(user(10), "not-a-token")
        wait_until_expired(short_tokens, expiring)
        with imap(oauth2_dovecot, ca_file) as client, pytest.raises(LoginError):
            client.oauth2_login(user(10), expiring)

    def test_passwords_still_work(self, oauth2_dovecot: Dovecot, ca_file: Path) -> None:
        name, password = oauth2_dovecot.user(12)
        with imap(oauth2_dovecot, ca_file) as client:
            client.login(name, password)
        with imap(oauth2_dovecot, ca_file) as client, pytest.raises(LoginError):
            client.login(name, "wrong")


# --- SMTP (aiosmtpd) --------------------------------------------------------------------------


def message(sender: str, recipient: str, subject: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = sender, recipient, subject
    mail.set_content("Hello over XOAUTH2.\n")
    return mail


async def send_with_xoauth2(
    server: SmtpServer, ca_file: Path, username: str, token: str, mail: EmailMessage | None = None
) -> None:
    async with aiosmtplib.SMTP(
        hostname=server.host,
        port=server.port,
        start_tls=True,
        tls_context=ssl.create_default_context(cafile=str(ca_file)),
        timeout=10,
    ) as smtp:
        await smtp.auth_xoauth2(username, token)
        if mail is not None:
            await smtp.send_message(mail)


class TestSmtp:
    def test_xoauth2_login_and_delivery(
        self,
        oauth2_server: OAuth2Server,
        oauth2_smtp: SmtpServer,
        oauth2_dovecot: Dovecot,
        ca_file: Path,
        msal_app: msal.PublicClientApplication,
    ) -> None:
        oauth2_server.auto_approve = user(13)
        try:
            token = msal_app.acquire_token_by_device_flow(
                msal_app.initiate_device_flow(scopes=M365_SCOPES)
            )["access_token"]
        finally:
            oauth2_server.auto_approve = None
        oauth2_dovecot.empty(user(14))

        # The AUTH line with a Microsoft-sized token is longer than 1000 octets.
        asyncio.run(
            send_with_xoauth2(
                oauth2_smtp, ca_file, user(13), token, message(user(13), user(14), "via oauth2")
            )
        )

        assert isinstance(oauth2_smtp.handler, OAuth2Handler)
        assert oauth2_smtp.handler.xoauth2_logins == [user(13)]
        assert [e.rcpt_tos for e in oauth2_smtp.received] == [[user(14)]]
        with imap(oauth2_dovecot, ca_file) as client:
            client.login(*oauth2_dovecot.user(14))
            client.select_folder("INBOX")
            assert len(client.search(["SUBJECT", "via oauth2"])) == 1

    @pytest.mark.parametrize(
        ("style", "reply"),
        [("google", "5.7.8 Username and Password not accepted"), ("microsoft", "5.7.3")],
    )
    def test_refused_tokens(
        self,
        style: str,
        reply: str,
        short_tokens: OAuth2Server,
        oauth2_smtp: SmtpServer,
        ca_file: Path,
        http: requests.Session,
    ) -> None:
        assert isinstance(oauth2_smtp.handler, OAuth2Handler)
        oauth2_smtp.handler.failure_style = style
        revoked = sign_in(short_tokens, http, user(15))["access_token"]
        short_tokens.revoke(user(15))
        expiring = sign_in(short_tokens, http, user(16))["access_token"]
        asyncio.run(send_with_xoauth2(oauth2_smtp, ca_file, user(16), expiring))  # fresh: fine
        wait_until_expired(short_tokens, expiring)

        for username, token in [(user(15), revoked), (user(16), expiring), (user(15), expiring)]:
            with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
                asyncio.run(send_with_xoauth2(oauth2_smtp, ca_file, username, token))
            assert refused.value.code == 535
            assert reply in refused.value.message
        assert oauth2_smtp.handler.xoauth2_logins == [user(16)]

    def test_xoauth2_without_initial_response(
        self,
        oauth2_server: OAuth2Server,
        oauth2_smtp: SmtpServer,
        ca_file: Path,
        http: requests.Session,
    ) -> None:
        token = sign_in(oauth2_server, http, user(17))["access_token"]
        sasl = base64.b64encode(f"user={user(17)}\x01auth=Bearer {token}\x01\x01".encode())

        async def login() -> tuple[int, int]:
            async with aiosmtplib.SMTP(
                hostname=oauth2_smtp.host,
                port=oauth2_smtp.port,
                start_tls=True,
                tls_context=ssl.create_default_context(cafile=str(ca_file)),
                timeout=10,
            ) as smtp:
                await smtp.ehlo()  # again, after STARTTLS
                challenge = await smtp.execute_command(b"AUTH", b"XOAUTH2")
                done = await smtp.execute_command(sasl)
                return challenge.code, done.code

        assert asyncio.run(login()) == (334, 235)

    def test_passwords_still_work(
        self, oauth2_dovecot: Dovecot, oauth2_smtp: SmtpServer, ca_file: Path
    ) -> None:
        async def login(password: str) -> None:
            async with aiosmtplib.SMTP(
                hostname=oauth2_smtp.host,
                port=oauth2_smtp.port,
                start_tls=True,
                tls_context=ssl.create_default_context(cafile=str(ca_file)),
                timeout=10,
            ) as smtp:
                await smtp.login(name, password)

        name, password = oauth2_dovecot.user(18)
        asyncio.run(login(password))
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            asyncio.run(login("wrong"))
