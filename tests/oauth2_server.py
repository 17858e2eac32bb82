"""A local OAuth2 authorization server on 127.0.0.1 for the tests, over HTTPS.

Two faces on one port:

* generic ("custom provider") endpoints, RFC 6749 / 7636 / 8628 / 7662:
  ``/authorize``, ``/token``, ``/device``, ``/introspect``, ``/.well-known/openid-configuration``;
* Microsoft-shaped endpoints under ``/{tenant}/`` so msal works with
  ``authority=f"{base_url}/{tenant}", instance_discovery=False, verify=str(ca_file)``:
  ``/{tenant}/v2.0/.well-known/openid-configuration``, ``/{tenant}/oauth2/v2.0/devicecode``,
  ``/{tenant}/oauth2/v2.0/token``, ``/{tenant}/oauth2/v2.0/authorize``. Their token responses
  carry an ``id_token`` (unsigned, msal only decodes it) and ``client_info`` (msal names the
  account from them), and their access tokens are JWT-shaped and about as long as real ones.

A second, plain-HTTP port serves only ``/introspect``: that is what Dovecot calls.

Users sign in by ``approve_device`` (device code) and ``consent`` (authorization code), or over
HTTP as a browser would: ``GET /authorize?...&login_hint=USER`` answers 302 to the redirect URI.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hashlib
import html
import json
import secrets
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: The scopes msal adds to every request; Microsoft leaves them out of a token's ``scope``.
MICROSOFT_RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})
#: Tenants the Microsoft-shaped endpoints answer for besides ``OAuth2Server.tenant``.
MICROSOFT_MULTI_TENANTS = frozenset({"common", "organizations"})
CODE_LIFETIME = 600.0
_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # no vowels: no words, no 0/O or 1/I mix-ups


class OAuth2Error(Exception):
    """An RFC 6749 error response (section 5.2): HTTP status plus ``error`` and description."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description}


@dataclass
class _Grant:
    """What the user consented to; every code and token points at one."""

    username: str
    client_id: str
    scope: str
    #: The tenant path segment when granted on the Microsoft-shaped endpoints, else None.
    tenant: str | None


@dataclass
class _AccessToken:
    grant: _Grant
    expires_at: float


@dataclass
class _DeviceCode:
    device_code: str
    user_code: str
    client_id: str
    scope: str
    tenant: str | None
    expires_at: float
    username: str | None = None
    denied: bool = False
    used: bool = False


@dataclass
class _AuthCode:
    grant: _Grant
    redirect_uri: str
    code_challenge: str
    expires_at: float
    nonce: str | None = None  # OpenID Connect: goes into the ID token (msal checks it)
    used: bool = False


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _jwt(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join(
        (
            _b64url(json.dumps(header, separators=(",", ":")).encode()),
            _b64url(json.dumps(claims, separators=(",", ":")).encode()),
            _b64url(signature),
        )
    )


def _guid(name: str) -> str:
    """A stable GUID for a name (user object ids, tenant ids), as Microsoft shows them."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"outreach-test:{name}"))


def pkce_challenge(verifier: str) -> str:
    """The S256 ``code_challenge`` for a ``code_verifier`` (RFC 7636 section 4.2)."""
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


@dataclass
class OAuth2Server:
    """A running authorization server; see the module docstring for its endpoints."""

    base_url: str
    introspection_url: str
    #: The certificate the HTTPS port serves; it is its own CA, so this is the file to trust.
    ca_file: Path
    tenant: str = "test-tenant"
    #: Seconds an access token lives; read at each issue, so tests may change it at any time.
    access_lifetime: float = 3600.0
    #: Seconds a device code may wait for its user before it gets ``expired_token``.
    device_code_lifetime: float = 900.0
    #: When set, each new device code is approved at once as this username.
    auto_approve: str | None = None
    #: Token requests by ``grant_type`` (also failed ones).
    token_requests: collections.Counter[str] = field(default_factory=collections.Counter)
    #: Every access and refresh token issued, in order.
    issued: list[str] = field(default_factory=list)
    #: How many introspection requests came (from Dovecot, typically).
    introspection_requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _access: dict[str, _AccessToken] = field(default_factory=dict, repr=False)
    _refresh: dict[str, _Grant] = field(default_factory=dict, repr=False)
    _devices: dict[str, _DeviceCode] = field(default_factory=dict, repr=False)
    _codes: dict[str, _AuthCode] = field(default_factory=dict, repr=False)
    _servers: list[ThreadingHTTPServer] = field(default_factory=list, repr=False)
    _threads: list[threading.Thread] = field(default_factory=list, repr=False)

    # --- URLs ---------------------------------------------------------------------------------

    @property
    def authorization_url(self) -> str:
        return f"{self.base_url}/authorize"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    @property
    def device_authorization_url(self) -> str:
        return f"{self.base_url}/device"

    @property
    def verification_url(self) -> str:
        """Where a user would type a device's user code."""
        return f"{self.base_url}/device/verify"

    @property
    def authority(self) -> str:
        """msal's ``authority`` for the Microsoft-shaped endpoints."""
        return f"{self.base_url}/{self.tenant}"

    def microsoft_url(self, endpoint: str, tenant: str | None = None) -> str:
        """``token``, ``devicecode`` or ``authorize`` on the Microsoft-shaped endpoints."""
        return f"{self.base_url}/{tenant or self.tenant}/oauth2/v2.0/{endpoint}"

    # --- What a user does in a browser --------------------------------------------------------

    def approve_device(self, user_code: str, username: str) -> None:
        """The user opened the verification page, typed ``user_code`` and consented."""
        with self._lock:
            device = self._device_by_user_code(user_code)
            device.username = username

    def deny_device(self, user_code: str) -> None:
        """The user declined: the device gets ``access_denied``."""
        with self._lock:
            self._device_by_user_code(user_code).denied = True

    def consent(self, authorization_url: str, username: str) -> str:
        """The user signed in at ``authorization_url`` and consented; returns the redirect URL.

        Raises ``OAuth2Error`` for a request this server refuses, notably one without a PKCE
        ``code_challenge`` (method S256).
        """
        parts = urlsplit(authorization_url)
        tenant = self._authorize_tenant(parts.path)
        return self._authorize(dict(parse_qsl(parts.query)), username, tenant)

    # --- What an administrator does -----------------------------------------------------------

    def revoke(self, username: str) -> None:
        """End ``username``'s sessions: their refresh tokens, access tokens and codes stop working.

        Tokens issued after this (a new sign-in) work again.
        """
        with self._lock:
            for token in [t for t, g in self._refresh.items() if g.username == username]:
                del self._refresh[token]
            for token in [t for t, a in self._access.items() if a.grant.username == username]:
                del self._access[token]
            for code in [c for c, a in self._codes.items() if a.grant.username == username]:
                del self._codes[code]

    def username_for(self, access_token: str) -> str | None:
        """The user of a valid, unexpired access token; None for any other string."""
        with self._lock:
            found = self._access.get(access_token)
            if found is None or found.expires_at <= time.time():
                return None
            return found.grant.username

    def stop(self) -> None:
        for httpd in self._servers:
            httpd.shutdown()
            httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=10)
        self._servers.clear()
        self._threads.clear()

    # --- Endpoints ----------------------------------------------------------------------------

    def handle(self, method: str, target: str, form: dict[str, str], client_id: str | None) -> Any:
        """Answer one request: a JSON-able dict, or ``("redirect", url)``, or ``("html", text)``.

        Raises ``OAuth2Error`` for an error response, ``LookupError`` for 404.
        """
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        query = dict(parse_qsl(parts.query))
        segments = path.strip("/").split("/")
        if method == "GET" and path in (
            "/.well-known/openid-configuration",
            "/.well-known/oauth-authorization-server",
        ):
            return self._generic_metadata()
        if method == "GET" and path == "/authorize":
            return self._authorize_over_http(query, None)
        if method == "POST" and path == "/token":
            return self._token(form, client_id, None)
        if method == "POST" and path == "/device":
            return self._device_authorization(form, client_id, None)
        if path == "/device/verify":
            return self._verification_page(method, {**query, **form})
        if method == "POST" and path == "/introspect":
            return self._introspect(form)
        if len(segments) >= 2:
            tenant, rest = segments[0], "/".join(segments[1:])
            if rest in (
                "v2.0/.well-known/openid-configuration",
                "oauth2/v2.0/token",
                "oauth2/v2.0/devicecode",
                "oauth2/v2.0/authorize",
            ):
                self._check_tenant(tenant)
                if method == "GET" and rest == "v2.0/.well-known/openid-configuration":
                    return self._microsoft_metadata(tenant)
                if method == "GET" and rest == "oauth2/v2.0/authorize":
                    return self._authorize_over_http(query, tenant)
                if method == "POST" and rest == "oauth2/v2.0/token":
                    return self._token(form, client_id, tenant)
                if method == "POST" and rest == "oauth2/v2.0/devicecode":
                    return self._device_authorization(form, client_id, tenant)
        raise LookupError(path)

    def _generic_metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.base_url,
            "authorization_endpoint": self.authorization_url,
            "token_endpoint": self.token_url,
            "device_authorization_endpoint": self.device_authorization_url,
            "introspection_endpoint": f"{self.base_url}/introspect",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token", DEVICE_GRANT],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": [
                "none",
                "client_secret_basic",
                "client_secret_post",
            ],
        }

    def _microsoft_metadata(self, tenant: str) -> dict[str, Any]:
        issuer_tenant = "{tenantid}" if tenant in MICROSOFT_MULTI_TENANTS else _guid(tenant)
        return {
            "token_endpoint": self.microsoft_url("token", tenant),
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{self.base_url}/{tenant}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{self.base_url}/{issuer_tenant}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{self.base_url}/oidc/userinfo",
            "authorization_endpoint": self.microsoft_url("authorize", tenant),
            "device_authorization_endpoint": self.microsoft_url("devicecode", tenant),
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{self.base_url}/{tenant}/oauth2/v2.0/logout",
            "claims_supported": [
                *("sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "preferred_username"),
                *("name", "tid", "ver", "email", "oid"),
            ],
            "kerberos_endpoint": f"{self.base_url}/{tenant}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "127.0.0.1",
            "cloud_graph_host_name": "127.0.0.1",
            "msgraph_host": "127.0.0.1",
        }

    def _check_tenant(self, tenant: str) -> None:
        if tenant != self.tenant and tenant not in MICROSOFT_MULTI_TENANTS:
            raise OAuth2Error(
                "invalid_tenant",
                f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the "
                "correct tenant ID and are signing into the correct cloud.",
            )

    def _authorize_tenant(self, path: str) -> str | None:
        path = path.rstrip("/")
        if path == "/authorize":
            return None
        segments = path.strip("/").split("/")
        if len(segments) == 4 and segments[1:] == ["oauth2", "v2.0", "authorize"]:
            self._check_tenant(segments[0])
            return segments[0]
        raise OAuth2Error("invalid_request", f"{path} is not an authorization endpoint")

    def _authorize(self, query: dict[str, str], username: str, tenant: str | None) -> str:
        if query.get("response_type") != "code":
            raise OAuth2Error("unsupported_response_type", "only response_type=code is supported")
        for name in ("client_id", "redirect_uri"):
            if not query.get(name):
                raise OAuth2Error("invalid_request", f"{name} is missing")
        if not query.get("code_challenge"):
            raise OAuth2Error("invalid_request", "PKCE is required: code_challenge is missing")
        if query.get("code_challenge_method") != "S256":
            raise OAuth2Error("invalid_request", "PKCE code_challenge_method must be S256")
        code = secrets.token_urlsafe(32)
        grant = _Grant(username, query["client_id"], query.get("scope", ""), tenant)
        with self._lock:
            self._codes[code] = _AuthCode(
                grant,
                query["redirect_uri"],
                query["code_challenge"],
                time.time() + CODE_LIFETIME,
                nonce=query.get("nonce"),
            )
        answer = {"code": code}
        if "state" in query:
            answer["state"] = query["state"]
        redirect_uri = query["redirect_uri"]
        return f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{urlencode(answer)}"

    def _authorize_over_http(self, query: dict[str, str], tenant: str | None) -> Any:
        username = query.get("login_hint") or self.auto_approve
        if username is None:
            return (
                "html",
                "<!doctype html><title>Sign in</title><p>Sign in (add login_hint=USER to the "
                "address, or set auto_approve, to consent).</p>",
            )
        try:
            return ("redirect", self._authorize(query, username, tenant))
        except OAuth2Error as error:
            redirect_uri = query.get("redirect_uri")
            if not redirect_uri or not query.get("client_id"):
                raise  # RFC 6749 4.1.2.1: never redirect to an unverified URI
            answer = error.body()
            if "state" in query:
                answer["state"] = query["state"]
            sep = "&" if "?" in redirect_uri else "?"
            return ("redirect", f"{redirect_uri}{sep}{urlencode(answer)}")

    def _device_authorization(
        self, form: dict[str, str], client_id: str | None, tenant: str | None
    ) -> dict[str, Any]:
        if not client_id:
            raise OAuth2Error("invalid_client", "client_id is missing")
        letters = [secrets.choice(_USER_CODE_ALPHABET) for _ in range(8)]
        user_code = (
            "".join(letters) if tenant else "".join(letters[:4]) + "-" + "".join(letters[4:])
        )
        device = _DeviceCode(
            device_code=secrets.token_urlsafe(32),
            user_code=user_code,
            client_id=client_id,
            scope=form.get("scope", ""),
            tenant=tenant,
            expires_at=time.time() + self.device_code_lifetime,
            username=self.auto_approve,
        )
        with self._lock:
            self._devices[device.device_code] = device
        expires_in = max(1, round(self.device_code_lifetime))
        if tenant is not None:  # Microsoft's shape: no verification_uri_complete, a message
            return {
                "user_code": user_code,
                "device_code": device.device_code,
                "verification_uri": self.verification_url,
                "expires_in": expires_in,
                "interval": 1,
                "message": (
                    f"To sign in, use a web browser to open the page {self.verification_url} "
                    f"and enter the code {user_code} to authenticate."
                ),
            }
        return {
            "device_code": device.device_code,
            "user_code": user_code,
            "verification_uri": self.verification_url,
            "verification_uri_complete": (
                f"{self.verification_url}?{urlencode({'user_code': user_code})}"
            ),
            "expires_in": expires_in,
            "interval": 1,
        }

    def _verification_page(self, method: str, values: dict[str, str]) -> Any:
        user_code, username = values.get("user_code", ""), values.get("username", "")
        if method == "POST" and user_code and username:
            try:
                self.approve_device(user_code, username)
            except OAuth2Error as error:
                return ("html", f"<!doctype html><p>{html.escape(error.description)}</p>")
            return ("html", "<!doctype html><p>You have signed in. You may close this window.</p>")
        return (
            "html",
            '<!doctype html><title>Enter code</title><form method="post">'
            f'<input name="user_code" value="{html.escape(user_code)}">'
            '<input name="username"><button>Continue</button></form>',
        )

    def _device_by_user_code(self, user_code: str) -> _DeviceCode:
        wanted = user_code.upper().replace("-", "").strip()
        for device in self._devices.values():
            if device.user_code.replace("-", "") == wanted:
                if device.expires_at <= time.time():
                    raise OAuth2Error("expired_token", f"the code {user_code} has expired")
                return device
        raise OAuth2Error("invalid_request", f"no device is waiting with the code {user_code}")

    def _introspect(self, form: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            self.introspection_requests += 1
            found = self._access.get(form.get("token", ""))
        if found is None or found.expires_at <= time.time():
            return {"active": False}
        grant = found.grant
        return {
            "active": True,
            "username": grant.username,
            "sub": grant.username,
            "client_id": grant.client_id,
            "scope": grant.scope,
            "token_type": "Bearer",
            "exp": int(found.expires_at),
        }

    def _token(self, form: dict[str, str], client_id: str | None, tenant: str | None) -> Any:
        grant_type = form.get("grant_type", "")
        with self._lock:
            self.token_requests[grant_type] += 1
        nonce = None
        if grant_type == "authorization_code":
            grant, nonce = self._redeem_code(form, client_id)
        elif grant_type == DEVICE_GRANT:
            grant = self._redeem_device_code(form)
        elif grant_type == "refresh_token":
            grant = self._redeem_refresh_token(form)
        else:
            raise OAuth2Error("unsupported_grant_type", f"grant_type {grant_type!r}")
        if form.get("scope"):
            grant = _Grant(grant.username, grant.client_id, form["scope"], grant.tenant)
        return self._issue(grant, tenant, form.get("client_info") == "1", nonce)

    def _redeem_code(
        self, form: dict[str, str], client_id: str | None
    ) -> tuple[_Grant, str | None]:
        with self._lock:
            found = self._codes.get(form.get("code", ""))
            if found is None or found.used or found.expires_at <= time.time():
                raise OAuth2Error("invalid_grant", "the authorization code is invalid or expired")
            found.used = True  # one use only, even when the rest of the request is wrong
        if client_id is not None and client_id != found.grant.client_id:
            raise OAuth2Error("invalid_grant", "the code was issued to another client")
        if form.get("redirect_uri") != found.redirect_uri:
            raise OAuth2Error("invalid_grant", "redirect_uri does not match the authorization")
        verifier = form.get("code_verifier")
        if not verifier:
            raise OAuth2Error("invalid_grant", "PKCE code_verifier is missing")
        if not secrets.compare_digest(pkce_challenge(verifier), found.code_challenge):
            raise OAuth2Error("invalid_grant", "PKCE verification failed")
        return found.grant, found.nonce

    def _redeem_device_code(self, form: dict[str, str]) -> _Grant:
        with self._lock:
            device = self._devices.get(form.get("device_code", ""))
            if device is None or device.used:
                raise OAuth2Error("invalid_grant", "the device code is invalid")
            if device.expires_at <= time.time():
                raise OAuth2Error("expired_token", "the device code has expired")
            if device.denied:
                raise OAuth2Error("access_denied", "the user declined the sign-in")
            if device.username is None:
                raise OAuth2Error(
                    "authorization_pending", "the user has not finished signing in yet"
                )
            device.used = True
            return _Grant(device.username, device.client_id, device.scope, device.tenant)

    def _redeem_refresh_token(self, form: dict[str, str]) -> _Grant:
        with self._lock:
            found = self._refresh.get(form.get("refresh_token", ""))
        if found is None:
            raise OAuth2Error("invalid_grant", "the refresh token is invalid, expired or revoked")
        return found

    def _issue(
        self, grant: _Grant, tenant: str | None, wants_client_info: bool, nonce: str | None
    ) -> dict[str, Any]:
        now = time.time()
        lifetime = self.access_lifetime
        microsoft = tenant is not None
        access = (
            self._microsoft_access_token(grant, now, lifetime)
            if microsoft
            else ("at." + secrets.token_urlsafe(32))
        )
        refresh = ("0.A" if microsoft else "rt.") + secrets.token_urlsafe(48 if microsoft else 32)
        with self._lock:
            self._access[access] = _AccessToken(grant, now + lifetime)
            self._refresh[refresh] = grant
            self.issued.extend((access, refresh))
        scopes = grant.scope.split()
        if microsoft:
            scopes = [s for s in scopes if s not in MICROSOFT_RESERVED_SCOPES]
        response: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(scopes),
            "expires_in": max(1, round(lifetime)),
            "access_token": access,
            "refresh_token": refresh,
        }
        if microsoft:
            response["ext_expires_in"] = response["expires_in"]
            response["id_token"] = self._id_token(grant, now, nonce)
            if wants_client_info:
                response["client_info"] = _b64url(
                    json.dumps({"uid": _guid(grant.username), "utid": self._tenant_id()}).encode()
                )
        return response

    def _tenant_id(self) -> str:
        return _guid(self.tenant)

    def _id_token(self, grant: _Grant, now: float, nonce: str | None) -> str:
        claims = {
            "aud": grant.client_id,
            "iss": f"{self.base_url}/{self._tenant_id()}/v2.0",
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now + 3600),
            "name": grant.username.split("@")[0],
            "oid": _guid(grant.username),
            "preferred_username": grant.username,
            "sub": _b64url(hashlib.sha256(grant.username.encode()).digest()),
            "tid": self._tenant_id(),
            "ver": "2.0",
        }
        if nonce is not None:
            claims["nonce"] = nonce
        # Unsigned (RFC 7519 "none"): msal decodes an ID token's claims without checking them.
        return _jwt({"typ": "JWT", "alg": "none"}, claims)

    def _microsoft_access_token(self, grant: _Grant, now: float, lifetime: float) -> str:
        """JWT-shaped and about as long as Microsoft's (over a thousand characters)."""
        claims = {
            "aud": "https://outlook.office.com",
            "iss": f"https://sts.windows.net/{self._tenant_id()}/",
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now + lifetime),
            "acr": "1",
            "amr": ["pwd", "mfa"],
            "app_displayname": "outreach",
            "appid": grant.client_id,
            "appidacr": "0",
            "idtyp": "user",
            "ipaddr": "127.0.0.1",
            "name": grant.username.split("@")[0],
            "oid": _guid(grant.username),
            "puid": secrets.token_hex(8).upper(),
            "scp": " ".join(
                s.rsplit("/", 1)[-1]
                for s in grant.scope.split()
                if s not in MICROSOFT_RESERVED_SCOPES
            ),
            "sid": str(uuid.uuid4()),
            "sub": _b64url(hashlib.sha256(("outlook" + grant.username).encode()).digest()),
            "tid": self._tenant_id(),
            "unique_name": grant.username,
            "upn": grant.username,
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
        }
        header = {"typ": "JWT", "nonce": secrets.token_urlsafe(32), "alg": "RS256", "kid": "test"}
        return _jwt(header, claims, secrets.token_bytes(256))  # the size of an RS256 signature


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.0"  # one request per connection: nothing lingers at stop()

    def do_GET(self) -> None:
        self._answer("GET", {})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", errors="replace")
        self._answer("POST", dict(parse_qsl(body, keep_blank_values=True)))

    def _answer(self, method: str, form: dict[str, str]) -> None:
        oauth2 = self.server.oauth2
        client_id = form.get("client_id") or self._basic_client_id()
        if self.server.introspection_only and urlsplit(self.path).path != "/introspect":
            self._send(404, {"error": "not_found"})
            return
        try:
            result = oauth2.handle(method, self.path, form, client_id)
        except OAuth2Error as error:
            self._send(error.status, error.body())
        except LookupError:
            self._send(404, {"error": "not_found", "error_description": self.path})
        else:
            if isinstance(result, tuple) and result[0] == "redirect":
                self.send_response(302)
                self.send_header("Location", result[1])
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif isinstance(result, tuple) and result[0] == "html":
                self._send(200, result[1].encode(), "text/html; charset=utf-8")
            else:
                self._send(200, result)

    def _basic_client_id(self) -> str | None:
        """client_id from HTTP Basic client authentication; any secret is accepted."""
        header = self.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            return None
        with contextlib.suppress(ValueError):
            decoded = base64.b64decode(header[6:]).decode()
            return unquote_plus(decoded.partition(":")[0]) or None
        return None

    def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read token_requests and issued, not an access log


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self, oauth2: OAuth2Server | None, context: ssl.SSLContext | None, introspection_only: bool
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.oauth2: OAuth2Server = oauth2  # type: ignore[assignment]  # set before serving
        self.context = context
        self.introspection_only = introspection_only

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake happens here, in the request's own thread, so a client that
        # connects and stalls cannot hold up the accept loop.
        request.settimeout(30)
        if self.context is None:
            super().finish_request(request, client_address)
            return
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        with tls:
            super().finish_request(tls, client_address)
            with contextlib.suppress(OSError):
                tls.unwrap()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up mid-request is not the test's failure

    @property
    def port(self) -> int:
        return int(self.socket.getsockname()[1])


def start_oauth2_server(cert: Path, key: Path, access_lifetime: float = 3600) -> OAuth2Server:
    """Serve the authorization server on 127.0.0.1: HTTPS with ``cert``, introspection on HTTP."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    https = _HTTPServer(None, context, introspection_only=False)
    http = _HTTPServer(None, None, introspection_only=True)
    server = OAuth2Server(
        base_url=f"https://127.0.0.1:{https.port}",
        introspection_url=f"http://127.0.0.1:{http.port}/introspect",
        ca_file=Path(cert),
        access_lifetime=access_lifetime,
    )
    for httpd in (https, http):
        httpd.oauth2 = server
        thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        thread.start()
        server._servers.append(httpd)
        server._threads.append(thread)
    return server
