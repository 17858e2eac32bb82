"""Access tokens for XOAUTH2: handed out while fresh, refreshed shortly before they expire,
and refreshed once more when a mail server refuses one.

When the provider refuses the refresh (revoked, expired, password changed), that is written to
the token file and logged once; from then on ``token()`` raises ``SignInNeeded`` at once,
without asking the provider again, until ``outreach auth login`` writes a new sign-in (picked
up on the next call: no restart) or ``REFUSED_RETRY_SECONDS`` have passed. Sending and
watching wait meanwhile; nothing is lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from outreach import redact
from outreach.config import OAuth2
from outreach.errors import MailServerUnusable, SignInNeeded
from outreach.signin.clients import Grant, Refused, TokenClient, Unreachable, token_client
from outreach.signin.token_file import SignIn, TokenFile

log = logging.getLogger(__name__)

REFRESH_BEFORE_SECONDS = 300.0  # refresh this long before expiry...
REFRESH_BEFORE_SHARE = 0.25  # ...or this share of the token's life, if that is shorter
REFUSED_RETRY_SECONDS = 1800.0  # ask again about a refused refresh token at most this often


class AccessTokens:
    """Hands out access tokens for one mailbox's XOAUTH2 logins; safe across threads, and
    across processes through the token file's lock."""

    def __init__(
        self,
        oauth2: OAuth2,
        account: str,
        file: TokenFile,
        client: TokenClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.oauth2, self.account, self.file = oauth2, account, file
        self._client = client
        self.clock = clock
        self._lock = threading.Lock()

    @property
    def client(self) -> TokenClient:
        if self._client is None:
            self._client = token_client(self.oauth2)
        return self._client

    def status(self) -> SignInStatus:
        """What ``auth status`` shows, read from the file alone (no network)."""
        sign_in = self.file.read(self.oauth2.provider, self.oauth2.client_id)
        return SignInStatus(self.file.location, sign_in if self._ours(sign_in) else None)

    def token(self) -> str:
        """A fresh access token, or SignInNeeded, or MailServerUnusable (transient) when the
        provider can't be reached."""
        with self._lock:
            sign_in = self._read()
            if self._fresh(sign_in):
                return self._handed_out(sign_in)
            return self._refresh(stale=sign_in.access_token)

    def refused(self, token: str) -> str:
        """A mail server refused ``token``: refresh once (unless another caller already did)."""
        with self._lock:
            return self._refresh(stale=token)

    def _read(self) -> SignIn:
        sign_in = self.file.read(self.oauth2.provider, self.oauth2.client_id)
        if sign_in is None:
            raise SignInNeeded(self.account, "not signed in")
        if not self._ours(sign_in):
            raise SignInNeeded(
                self.account, "signed in with another provider or app registration than [oauth2]"
            )
        return sign_in

    def _ours(self, sign_in: SignIn | None) -> bool:
        """Whether the kept sign-in is for the configured provider and app registration."""
        return (
            sign_in is not None
            and sign_in.client_id == self.oauth2.client_id
            and sign_in.provider == self.oauth2.provider
        )

    def _fresh(self, sign_in: SignIn) -> bool:
        now = self.clock()
        lifetime = max(sign_in.expires_at - sign_in.obtained_at, 0.0)
        margin = min(REFRESH_BEFORE_SECONDS, lifetime * REFRESH_BEFORE_SHARE)
        return sign_in.lifetime_left(now) > margin

    def _refresh(self, stale: str) -> str:
        """Refresh under the file's lock; another process may have refreshed meanwhile."""
        with self.file.locked():
            sign_in = self._read()
            if sign_in.access_token and sign_in.access_token != stale and self._fresh(sign_in):
                return self._handed_out(sign_in)
            now = self.clock()
            if sign_in.refused_at and now - sign_in.refused_at < REFUSED_RETRY_SECONDS:
                raise SignInNeeded(self.account, f"sign-in refused ({sign_in.refused_reason})")
            try:
                grant = self.client.refresh(sign_in.refresh_token)
            except Refused as exc:
                sign_in.refused_at, sign_in.refused_reason = now, str(exc)
                sign_in.access_token, sign_in.expires_at = "", 0.0
                self.file.write(sign_in)
                log.error(
                    "sign-in expired for %s: %s; sending and watching wait: run outreach auth "
                    "login",
                    self.account,
                    exc,
                )
                raise SignInNeeded(self.account, f"sign-in refused ({exc})") from None
            except Unreachable as exc:
                raise MailServerUnusable(
                    f"sign-in for {self.account}",
                    f"the provider can't refresh the access token now: {exc}",
                    transient=True,
                ) from None
            updated = apply_grant(sign_in, grant, now)
            updated.last_refresh = now
            self.file.write(updated)
            return self._handed_out(updated)

    def _handed_out(self, sign_in: SignIn) -> str:
        redact.hide_current("oauth2", [sign_in.access_token, sign_in.refresh_token])
        return sign_in.access_token


@dataclass(frozen=True)
class SignInStatus:
    """One mailbox's sign-in as the token file tells it."""

    location: str
    sign_in: SignIn | None

    @property
    def needed(self) -> bool:
        """Whether a person must run ``outreach auth login``."""
        return self.sign_in is None or bool(self.sign_in.refused_at)

    @property
    def summary(self) -> str:
        """A few words: "signed in", "not signed in", "sign-in expired"."""
        if self.sign_in is None:
            return "not signed in: run outreach auth login"
        if self.sign_in.refused_at:
            return "sign-in expired: run outreach auth login"
        return "signed in"


def apply_grant(sign_in: SignIn, grant: Grant, now: float) -> SignIn:
    """The sign-in after the provider handed out ``grant``: a new access token, the refresh
    token if it rotated, and the refusal forgotten."""
    sign_in.access_token = grant.access_token
    sign_in.obtained_at = now
    sign_in.expires_at = now + grant.expires_in
    sign_in.refresh_token = grant.refresh_token or sign_in.refresh_token
    sign_in.scopes = grant.scopes or sign_in.scopes
    sign_in.account = grant.account or sign_in.account
    sign_in.refused_at, sign_in.refused_reason = 0.0, ""
    return sign_in
