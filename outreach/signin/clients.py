"""Talking to an OAuth2 provider: Microsoft through msal (its own library), Google and custom
providers through authlib. Each client gets tokens by a sign-in flow and refreshes them; what
the provider answers becomes a ``Grant``, a ``Refused`` (a person must sign in again) or an
``Unreachable`` (try later). No token is logged or put in an error message."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from outreach.config import OAuth2
from outreach.signin.providers import Endpoints, endpoints

# Provider answers that only a new sign-in fixes (RFC 6749 5.2, Microsoft's AADSTS codes come
# as these). Anything else (a timeout, a 5xx, "temporarily_unavailable") is worth retrying.
REFUSALS = frozenset(
    {
        "invalid_grant",
        "invalid_client",
        "unauthorized_client",
        "interaction_required",
        "consent_required",
        "login_required",
        "access_denied",
        "invalid_scope",
        "expired_token",
    }
)
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
HTTP_TIMEOUT = 30.0

# Neither library may write a request or response (tokens) to our logs, whatever the level.
for _name in ("msal", "authlib", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)


@dataclass(frozen=True)
class Grant:
    """What a token endpoint handed out."""

    access_token: str
    expires_in: float
    refresh_token: str | None
    scopes: list[str]
    account: str = ""


# Microsoft's reasons (AADSTS codes in error_description) that a person can fix, with the fix.
AADSTS_FIXES = {
    "AADSTS65001": "the app has no consent for the mail permissions: an administrator grants "
    "it (Entra admin center, App registrations, API permissions, Grant admin consent)",
    "AADSTS90002": "no such tenant: check [oauth2] tenant (the Directory (tenant) ID)",
    "AADSTS700016": "no such application in that tenant: check [oauth2] client_id and tenant",
    "AADSTS7000218": "the app registration does not allow public client flows: turn on "
    "Authentication, Allow public client flows",
    "AADSTS50020": "this account is not in the tenant: sign in with the mailbox's own account, "
    "or set [oauth2] tenant to the account's tenant",
    "AADSTS50076": "the account needs multi-factor authentication: sign in again with auth login",
    "AADSTS700082": "the sign-in expired after long disuse",
    "AADSTS50173": "the password changed or the session was revoked",
}


class Refused(Exception):
    """The provider refused: only a new sign-in helps."""

    def __init__(self, error: str, description: str = "") -> None:
        self.error = error
        fix = next((fix for code, fix in AADSTS_FIXES.items() if f"{code}:" in description), "")
        words = fix or _first_line(description)
        super().__init__(f"{error}: {words}" if words else error)


class Unreachable(Exception):
    """The provider didn't answer usefully; worth trying again later."""


@dataclass(frozen=True)
class DeviceCode:
    """What the person must do on another device to sign in (RFC 8628)."""

    verification_uri: str
    user_code: str
    message: str
    expires_in: float
    interval: float
    handle: Any  # the flow's own state, for ``finish_device``


class TokenClient(Protocol):
    """One provider's token endpoint, as the refresher and ``auth login`` use it."""

    def refresh(self, refresh_token: str) -> Grant: ...


def token_client(oauth2: OAuth2) -> MicrosoftClient | GenericClient:
    """The client for the configured provider."""
    place = endpoints(oauth2)
    if place.provider == "microsoft":
        return MicrosoftClient(oauth2, place)
    return GenericClient(oauth2, place)


class MicrosoftClient:
    """Microsoft Entra ID through msal: the device code flow and refreshes, as a public client
    (the app registration needs "Allow public client flows").

    Each refresh (about once an hour) and each sign-in gets its own msal application and HTTP
    session, closed after: msal has no close() of its own, and it would re-serve a cached
    error answer for 60 s to a later, identical request."""

    def __init__(self, oauth2: OAuth2, place: Endpoints) -> None:
        self.oauth2, self.place = oauth2, place
        self._app: Any = None
        self._http: Any = None

    def _application(self) -> Any:
        if self._app is None:
            import msal  # noqa: PLC0415  (loads slowly; only a signed-in install needs it)
            import requests  # noqa: PLC0415

            default = self.place.authority.startswith("https://login.microsoftonline.com/")
            http = self._http = pinned(requests.Session)()
            http.verify = str(self.oauth2.ca_file) if self.oauth2.ca_file else True
            try:
                self._app = msal.PublicClientApplication(
                    self.oauth2.client_id,
                    authority=self.place.authority,
                    instance_discovery=None if default else False,
                    http_client=http,
                    timeout=HTTP_TIMEOUT,
                )
            except ValueError as exc:  # msal's word for an unknown tenant or authority
                self.close()
                raise Refused("invalid_tenant", str(exc)) from None
            except OSError as exc:
                self.close()
                raise Unreachable(f"{self.place.authority}: {_first_line(str(exc))}") from None
        return self._app

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        self._app = self._http = None

    def refresh(self, refresh_token: str) -> Grant:
        try:
            app = self._application()
            result = app.acquire_token_by_refresh_token(refresh_token, list(self.place.scopes))
        except OSError as exc:
            raise Unreachable(_first_line(str(exc))) from None
        finally:
            self.close()
        return self._grant(result)

    def start_device(self) -> DeviceCode:
        app = self._application()
        try:
            flow = app.initiate_device_flow(scopes=list(self.place.scopes))
        except OSError as exc:
            self.close()
            raise Unreachable(_first_line(str(exc))) from None
        if "user_code" not in flow:
            self.close()
            error = flow.get("error", "device_code_refused")
            raise Refused(error, flow.get("error_description", ""))
        return DeviceCode(
            flow["verification_uri"],
            flow["user_code"],
            flow.get("message", ""),
            float(flow.get("expires_in", 900)),
            float(flow.get("interval", 5)),
            flow,
        )

    def finish_device(self, code: DeviceCode) -> Grant:
        """Wait until the person has signed in (or the code expired)."""
        try:
            result = self._application().acquire_token_by_device_flow(code.handle)
        except OSError as exc:
            raise Unreachable(_first_line(str(exc))) from None
        finally:
            self.close()
        return self._grant(result)

    def _grant(self, result: dict[str, Any]) -> Grant:
        if "access_token" not in result:
            error = str(result.get("error", "no_token"))
            description = str(result.get("error_description", ""))
            if error in REFUSALS:
                raise Refused(error, description)
            raise Unreachable(f"{error}: {_first_line(description)}")
        claims = result.get("id_token_claims") or {}
        return Grant(
            result["access_token"],
            float(result.get("expires_in", 3600)),
            result.get("refresh_token"),
            str(result.get("scope", " ".join(self.place.scopes))).split(),
            str(claims.get("preferred_username") or claims.get("email") or ""),
        )


class GenericClient:
    """Google and custom providers through authlib: authorization code with PKCE (S256) and a
    loopback redirect, the RFC 8628 device code flow, and refreshes."""

    def __init__(self, oauth2: OAuth2, place: Endpoints) -> None:
        self.oauth2, self.place = oauth2, place

    def _session(self, **kwargs: Any) -> Any:
        from authlib.integrations.requests_client import OAuth2Session  # noqa: PLC0415

        secret = self.oauth2.client_secret.get_secret_value() if self.oauth2.client_secret else None
        session = pinned(OAuth2Session)(
            self.oauth2.client_id,
            secret,
            token_endpoint_auth_method="client_secret_post" if secret else "none",
            scope=" ".join(self.place.scopes),
            default_timeout=HTTP_TIMEOUT,
            **kwargs,
        )
        if self.oauth2.ca_file is not None:
            session.verify = str(self.oauth2.ca_file)
        return session

    def refresh(self, refresh_token: str) -> Grant:
        with self._session() as session:
            token = _call(lambda: session.refresh_token(self.place.token_url, refresh_token))
        return self._grant(token, refresh_token)

    # --- authorization code with PKCE -------------------------------------------------------

    def authorization_url(self, redirect_uri: str) -> tuple[str, str, str]:
        """The URL to open in a browser, its ``state`` and the PKCE code verifier."""
        verifier = secrets.token_urlsafe(64)
        with self._session(redirect_uri=redirect_uri, code_challenge_method="S256") as session:
            extra = {"access_type": "offline", "prompt": "consent"}  # Google: a refresh token
            url, state = session.create_authorization_url(
                self.place.authorization_url, code_verifier=verifier, **extra
            )
        return url, state, verifier

    def finish_browser(
        self, redirect_uri: str, response_url: str, state: str, verifier: str
    ) -> Grant:
        """Exchange the code in the redirect the browser landed on for tokens."""
        from urllib.parse import parse_qs, urlsplit  # noqa: PLC0415

        query = parse_qs(urlsplit(response_url).query)
        if "error" in query:
            raise Refused(query["error"][0], query.get("error_description", [""])[0])
        if query.get("state", [""])[0] != state:
            raise Refused("state_mismatch", "the pasted address is from another sign-in")
        if "code" not in query:
            raise Refused("no_code", "the pasted address holds no authorization code")
        with self._session(redirect_uri=redirect_uri) as session:
            token = _call(
                lambda: session.fetch_token(
                    self.place.token_url,
                    grant_type="authorization_code",
                    code=query["code"][0],
                    code_verifier=verifier,
                )
            )
        return self._grant(token, None)

    # --- device code (RFC 8628) ------------------------------------------------------------

    def start_device(self) -> DeviceCode:
        with self._session() as session:
            data: dict[str, str] = {"client_id": self.oauth2.client_id}
            if self.place.scopes:
                data["scope"] = " ".join(self.place.scopes)
            response = _call(
                lambda: session.post(
                    self.place.device_authorization_url, data=data, withhold_token=True
                )
            )
        try:
            body = response.json()
        except ValueError:
            answer = f"device authorization answered HTTP {response.status_code}"
            raise Unreachable(answer) from None
        if "error" in body or "device_code" not in body:
            error = str(body.get("error", "device_code_refused"))
            raise Refused(error, str(body.get("error_description", "")))
        uri = body.get("verification_uri_complete") or body["verification_uri"]
        return DeviceCode(
            body["verification_uri"],
            body["user_code"],
            f"To sign in, open {uri} and enter the code {body['user_code']}.",
            float(body.get("expires_in", 900)),
            float(body.get("interval", 5)),
            body["device_code"],
        )

    def finish_device(self, code: DeviceCode, sleep: Callable[[float], None] = time.sleep) -> Grant:
        """Poll the token endpoint until the person has signed in, as RFC 8628 3.5 says."""
        deadline = time.monotonic() + code.expires_in
        interval = code.interval
        with self._session() as session:
            while time.monotonic() < deadline:
                sleep(interval)
                try:
                    token = _call(
                        lambda: session.fetch_token(
                            self.place.token_url, grant_type=DEVICE_GRANT, device_code=code.handle
                        )
                    )
                except Refused as exc:
                    if exc.error == "authorization_pending":
                        continue
                    if exc.error == "slow_down":
                        interval += 5
                        continue
                    raise
                return self._grant(token, None)
        raise Refused("expired_token", "the code expired before anyone signed in")

    def _grant(self, token: dict[str, Any], previous_refresh: str | None) -> Grant:
        if "access_token" not in token:
            raise Unreachable("the token endpoint answered without an access token")
        scope = token.get("scope")
        return Grant(
            token["access_token"],
            float(token.get("expires_in", 3600)),
            token.get("refresh_token") or previous_refresh,  # Google keeps the same one
            str(scope).split() if scope else list(self.place.scopes),
        )


def pinned(session_class: type[Any]) -> type[Any]:
    """``session_class`` (a requests.Session) whose own ``verify`` wins over
    ``$REQUESTS_CA_BUNDLE``: requests lets the environment override a session's CA bundle,
    which would make ``[oauth2] ca_file`` silently useless where that variable is set."""

    class Pinned(session_class):  # type: ignore[misc]
        def merge_environment_settings(self, *args: Any, **kwargs: Any) -> Any:
            settings = super().merge_environment_settings(*args, **kwargs)
            if self.verify is not True:
                settings["verify"] = self.verify
            return settings

    return Pinned


def _call(request: Callable[[], Any]) -> Any:
    """Run one request to the provider, its failures sorted into Refused and Unreachable."""
    from authlib.integrations.base_client import OAuthError  # noqa: PLC0415
    from requests import RequestException  # noqa: PLC0415

    try:
        return request()
    except OAuthError as exc:
        error = str(exc.error or "error")
        if error in REFUSALS or error in ("authorization_pending", "slow_down"):
            raise Refused(error, str(exc.description or "")) from None
        raise Unreachable(f"{error}: {_first_line(str(exc.description or ''))}") from None
    except (RequestException, OSError, ValueError) as exc:
        raise Unreachable(_first_line(str(exc))) from None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else ""
