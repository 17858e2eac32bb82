"""Mailbox provider presets: ``[mailbox] provider`` fills the SMTP and IMAP servers, their
security and how outreach signs in, so a practice on a big provider writes one line.

Keys written in ``[smtp]`` or ``[imap]`` still win over the preset. The sign-in defaults follow
what each provider allows today (checked 2026-11): Microsoft turned off password logins for
IMAP in 2022, for Outlook.com in 2024, and for SMTP AUTH by default at the end of 2026; Google
Workspace allows passwords only as app passwords where the admin permits, so OAuth2 is the
default there. Gmail, iCloud, Yahoo, Fastmail and Zoho take an app password.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Provider = Literal[
    "gmail",
    "google_workspace",
    "microsoft365",
    "outlook_com",
    "icloud",
    "fastmail",
    "yahoo",
    "zoho",
    "custom",
]
SignIn = Literal["password", "oauth2"]
OAuth2Provider = Literal["microsoft", "google", "custom"]


@dataclass(frozen=True)
class Preset:
    """What a provider's mailbox needs: servers, sign-in, and whether it files sent mail itself."""

    smtp_host: str
    smtp_port: int
    smtp_security: Literal["starttls", "tls"]
    imap_host: str
    auth: SignIn
    oauth2: OAuth2Provider | None = None
    # Gmail and Exchange file every message submitted over SMTP in Sent themselves: outreach
    # must not add a second copy, and after a crash it looks there for what left.
    server_saves_sent: bool = False
    tenant: str = ""  # Microsoft: "consumers" for Outlook.com accounts
    imap_port: int = 993


PRESETS: dict[str, Preset] = {
    "gmail": Preset("smtp.gmail.com", 465, "tls", "imap.gmail.com", "password", "google", True),
    "google_workspace": Preset(
        "smtp.gmail.com", 465, "tls", "imap.gmail.com", "oauth2", "google", True
    ),
    "microsoft365": Preset(
        "smtp.office365.com", 587, "starttls", "outlook.office365.com", "oauth2", "microsoft", True
    ),
    "outlook_com": Preset(
        "smtp-mail.outlook.com",
        587,
        "starttls",
        "outlook.office365.com",
        "oauth2",
        "microsoft",
        True,
        tenant="consumers",
    ),
    "icloud": Preset("smtp.mail.me.com", 587, "starttls", "imap.mail.me.com", "password"),
    "fastmail": Preset("smtp.fastmail.com", 465, "tls", "imap.fastmail.com", "password"),
    "yahoo": Preset("smtp.mail.yahoo.com", 465, "tls", "imap.mail.yahoo.com", "password"),
    "zoho": Preset("smtp.zoho.com", 465, "tls", "imap.zoho.com", "password"),
}


def apply_preset(data: dict[str, Any]) -> dict[str, Any]:
    """The raw configuration with ``[mailbox] provider``'s values filled in where the file and
    the environment left them out. Anything that is not a table is left for validation."""
    mailbox = data.get("mailbox")
    provider = mailbox.get("provider") if isinstance(mailbox, dict) else None
    preset = PRESETS.get(provider) if isinstance(provider, str) else None
    if preset is None:
        return data
    data = dict(data)
    smtp, imap = data.get("smtp", {}), data.get("imap", {})
    if isinstance(smtp, dict):
        data["smtp"] = {
            "host": preset.smtp_host,
            "port": preset.smtp_port,
            "security": preset.smtp_security,
            "auth": preset.auth,
            **smtp,
        }
    if isinstance(imap, dict):
        data["imap"] = {
            "host": preset.imap_host,
            "port": preset.imap_port,
            "security": "tls",
            "auth": preset.auth,
            "server_saves_sent": preset.server_saves_sent,
            **imap,
        }
    oauth2 = data.get("oauth2")
    if preset.oauth2 is not None and isinstance(oauth2, dict):
        tenant = {"tenant": preset.tenant} if preset.tenant else {}
        data["oauth2"] = {"provider": preset.oauth2, **tenant, **oauth2}
    return data
