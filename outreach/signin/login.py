"""``outreach auth login``: one interactive sign-in, kept in the token file.

Microsoft and providers with a device endpoint: the person opens a short URL on any device and
types a code (RFC 8628; works on a headless server). Google and other browser sign-ins: the
authorization code flow with PKCE and a loopback redirect (RFC 8252): a browser on this
machine is sent to the provider and back to a one-shot listener on 127.0.0.1; with
``paste`` (``--no-browser``), the URL is printed and the address the browser ended on is read
back, for a server without a browser.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from outreach.config import OAuth2
from outreach.signin.clients import GenericClient, Grant, MicrosoftClient, Refused, token_client
from outreach.signin.providers import endpoints
from outreach.signin.token_file import SignIn, TokenFile
from outreach.signin.tokens import apply_grant

# Where the browser is sent back when nothing listens (--no-browser): Google accepts any
# loopback port for installed apps; the page fails to load and its address is pasted back.
PASTE_REDIRECT = "http://127.0.0.1:8400/"
BROWSER_WAIT_SECONDS = 300.0
DONE_PAGE = (
    b"<!doctype html><title>outreach</title><p>Signed in. You can close this tab and go back "
    b"to the terminal.</p>"
)


class SignInFailed(Exception):
    """The sign-in did not complete; the message says why (no token in it)."""


def log_in(
    oauth2: OAuth2,
    account: str,
    file: TokenFile,
    *,
    say: Callable[[str], None],
    browser: Callable[[str], object] | None = None,
    paste: Callable[[str], str] | None = None,
    clock: Callable[[], float] = time.time,
) -> SignIn:
    """Sign in interactively and keep the result in ``file`` (mode 0600)."""
    if oauth2.provider == "google" and oauth2.client_secret is None:
        raise SignInFailed(
            "Google's desktop-app clients need their client secret: put it in "
            "$CREDENTIALS_DIRECTORY/oauth2_client_secret or OUTREACH_OAUTH2__CLIENT_SECRET"
        )
    client = token_client(oauth2)
    try:
        if endpoints(oauth2).flow == "device":
            grant = _device(client, say)
        else:
            assert isinstance(client, GenericClient)
            grant = _browser(client, say, browser, paste)
    except Refused as exc:
        raise SignInFailed(f"the provider refused the sign-in: {exc}") from None
    if not grant.refresh_token:
        raise SignInFailed(
            "the provider gave no refresh token, so outreach could not stay signed in: check "
            "that the app registration allows offline access (Microsoft: offline_access is "
            "asked for by default; Google: the consent screen must be shown again)"
        )
    now = clock()
    sign_in = apply_grant(
        SignIn(oauth2.provider, oauth2.client_id, grant.refresh_token, account=account), grant, now
    )
    sign_in.signed_in_at = now
    file.write(sign_in)
    return sign_in


def _device(client: MicrosoftClient | GenericClient, say: Callable[[str], None]) -> Grant:
    code = client.start_device()
    say(code.message or f"To sign in, open {code.verification_uri} and enter {code.user_code}")
    say(
        "Waiting for the sign-in to finish (the code is good for "
        f"{round(code.expires_in / 60)} minutes)..."
    )
    return client.finish_device(code)


def _browser(
    client: GenericClient,
    say: Callable[[str], None],
    browser: Callable[[str], object] | None,
    paste: Callable[[str], str] | None,
) -> Grant:
    if paste is not None:
        url, state, verifier = client.authorization_url(PASTE_REDIRECT)
        say(f"Open this address in a browser on any machine and sign in:\n\n{url}\n")
        say(
            "The browser then goes to an address starting with "
            f"{PASTE_REDIRECT} that fails to load: that is expected."
        )
        answer = paste("Paste that whole address here").strip()
        if not answer.startswith(PASTE_REDIRECT.rstrip("/")):
            raise SignInFailed(f"that is not the address the browser ended on ({PASTE_REDIRECT})")
        return client.finish_browser(PASTE_REDIRECT, answer, state, verifier)
    with _Listener() as listener:
        url, state, verifier = client.authorization_url(listener.redirect_uri)
        say(f"Opening your browser to sign in. If it does not open, visit:\n\n{url}\n")
        if browser is not None:
            browser(url)
        path = listener.wait(BROWSER_WAIT_SECONDS)
        if path is None:
            raise SignInFailed(
                f"no answer from the browser within {BROWSER_WAIT_SECONDS / 60:.0f} minutes; "
                "on a machine without a browser, use outreach auth login --no-browser"
            )
        return client.finish_browser(listener.redirect_uri, listener.origin + path, state, verifier)


class _Listener:
    """A one-shot HTTP listener on 127.0.0.1 for the provider's redirect."""

    def __init__(self) -> None:
        received: list[str] = []
        arrived = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if "code=" in self.path or "error=" in self.path:
                    received.append(self.path)
                    arrived.set()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(DONE_PAGE)

            def log_message(self, format: str, *args: object) -> None:
                return  # the request line holds the authorization code: never log it

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.redirect_uri = self.origin + "/"
        self._received, self._arrived = received, arrived
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Listener:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()

    def wait(self, seconds: float) -> str | None:
        """The path (with the query) the browser came back to, or None after ``seconds``."""
        if not self._arrived.wait(seconds):
            return None
        path = self._received[0]
        return path if urlsplit(path).path else "/" + path
