"""Why a mail server refused our login, in one line with the fix, for the refusals the big
providers give (Microsoft 365, Gmail) and otherwise the server's own words.

Microsoft: "5.7.139 Authentication unsuccessful, basic authentication is disabled" (SMTP),
"5.7.139 ... SmtpClientAuthentication is disabled for the Tenant/Mailbox", and a bare
"AUTHENTICATE failed" on IMAP when IMAP access or the app's consent is missing. Google:
"Application-specific password required" (5.7.9, or [ALERT] on IMAP) when a normal password is
used, "Username and Password not accepted" (5.7.8), and for XOAUTH2 a base64 JSON challenge
whose status 400 means the token lacks the mail scope.
"""

from __future__ import annotations

import base64
import binascii
import re

# (the server's words, the fix, whether it applies to OAuth2 logins too). Gmail answers a bad
# XOAUTH2 token with "Username and Password not accepted" as well: no password advice there.
_FIXES: list[tuple[re.Pattern[str], str, bool]] = [
    (
        re.compile(r"basic authentication is disabled|5\.7\.139.*basic", re.I),
        'the provider turned off password logins for this account: set auth = "oauth2" in '
        "[smtp] and [imap], then run outreach auth login",
        False,
    ),
    (
        re.compile(r"SmtpClientAuthentication is disabled", re.I),
        "authenticated SMTP (SMTP AUTH) is turned off for this mailbox or tenant: an "
        "administrator turns it on in the Microsoft 365 admin center (Mail apps > Authenticated "
        "SMTP)",
        True,
    ),
    (
        re.compile(r"application-specific password required|InvalidSecondFactor", re.I),
        "Google wants an app password here (myaccount.google.com/apppasswords, with 2-step "
        'verification on), or set auth = "oauth2" and run outreach auth login',
        False,
    ),
    (
        re.compile(r"web login required|WebLoginRequired", re.I),
        "the provider wants you to sign in once in a browser (a security check) before mail "
        "programs may log in",
        True,
    ),
    (
        re.compile(r"Username and Password not accepted|5\.7\.8", re.I),
        "user name or password not accepted: check [smtp]/[imap] username and the password "
        "(an app password where the provider asks for one)",
        False,
    ),
]


def login_problem(username: str, auth: str, reply: str) -> str:
    """One sentence: whose login was refused, the server's words, and the fix if known."""
    text = _decoded_challenge(reply)
    words = " ".join(text.split())[:200]
    for pattern, fix, for_oauth2 in _FIXES:
        if (auth == "password" or for_oauth2) and pattern.search(text):
            return f"login refused for {username} ({words}): {fix}"
    if auth == "oauth2":
        return (
            f"login refused for {username} with a valid-looking OAuth2 token ({words}): check "
            "that the mailbox has IMAP/SMTP access turned on, that [smtp]/[imap] username is "
            "the account that signed in (outreach auth status), and that the app registration "
            "has the mail scopes consented"
        )
    return f"login refused for {username} ({words})"


def _decoded_challenge(reply: str) -> str:
    """The reply, with an XOAUTH2 error challenge (base64 JSON) decoded beside it."""
    for word in re.findall(r"[A-Za-z0-9+/]{20,}={0,2}", reply):
        try:
            decoded = base64.b64decode(word, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            continue
        if decoded.lstrip().startswith("{"):
            return f"{reply} {decoded}"
    return reply
