"""Where each OAuth2 provider signs people in, and the scopes its mail servers ask for."""

from __future__ import annotations

from dataclasses import dataclass

from outreach.config import OAuth2

MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
# msal adds offline_access, openid and profile itself (and refuses them if given).
MICROSOFT_SCOPES = (
    "https://outlook.office.com/IMAP.AccessAsUser.All",
    "https://outlook.office.com/SMTP.Send",
)
GOOGLE_AUTHORIZATION_URL = "https://accounts.google.com/o/oauth2/v2/auth"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"  # noqa: S105  (a URL, not a secret)
GOOGLE_SCOPES = ("https://mail.google.com/",)  # the only scope Google gives IMAP and SMTP


@dataclass(frozen=True)
class Endpoints:
    """One provider's sign-in: its URLs and the scopes to ask for."""

    provider: str
    scopes: tuple[str, ...]
    token_url: str = ""
    authorization_url: str = ""
    device_authorization_url: str = ""
    authority: str = ""  # Microsoft: the authority msal is given (host and tenant)

    @property
    def flow(self) -> str:
        """How ``auth login`` signs in: "device" (a code typed on another device) or
        "browser" (authorization code with PKCE and a loopback redirect)."""
        if self.provider == "microsoft" or self.device_authorization_url:
            return "device"
        return "browser"


def endpoints(oauth2: OAuth2) -> Endpoints:
    """The configured provider's endpoints; explicit URLs and scopes in ``[oauth2]`` win."""
    scopes = tuple(oauth2.scopes)
    if oauth2.provider == "microsoft":
        host = (oauth2.authority or MICROSOFT_AUTHORITY).rstrip("/")
        return Endpoints(
            "microsoft", scopes or MICROSOFT_SCOPES, authority=f"{host}/{oauth2.tenant}"
        )
    if oauth2.provider == "google":
        return Endpoints(
            "google",
            scopes or GOOGLE_SCOPES,
            token_url=oauth2.token_url or GOOGLE_TOKEN_URL,
            authorization_url=oauth2.authorization_url or GOOGLE_AUTHORIZATION_URL,
        )
    return Endpoints(
        "custom",
        scopes,
        token_url=oauth2.token_url,
        authorization_url=oauth2.authorization_url,
        device_authorization_url=oauth2.device_authorization_url,
    )
