"""``outreach auth``: sign in to the mailbox with OAuth2, see the sign-in, sign out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from outreach.cli.common import auth_app, context_of, err, out, print_json, reported
from outreach.errors import ConfigError

if TYPE_CHECKING:
    from outreach.config import Settings
    from outreach.signin.tokens import AccessTokens


def _tokens(settings: Settings) -> AccessTokens:
    from outreach.mail.connections import sign_in

    tokens = sign_in(settings)
    if tokens is None:
        raise ConfigError(
            [
                'smtp.auth: neither [smtp] nor [imap] has auth = "oauth2", so there is nothing '
                "to sign in to (set it, and an [oauth2] table; README, "
                '"Signing in with OAuth2")'
            ]
        )
    return tokens


@auth_app.command("login")
def auth_login(
    ctx: typer.Context,
    no_browser: Annotated[
        bool,
        typer.Option(
            "--no-browser",
            help="Print the sign-in address and read back the address the browser ended on "
            "(for a server without a browser; Google and other browser sign-ins).",
        ),
    ] = False,
) -> None:
    """Sign in to the mailbox's provider; the refresh token is kept in the state directory."""
    with reported():
        import webbrowser

        from outreach.signin.login import SignInFailed, log_in

        settings = context_of(ctx).settings()
        tokens = _tokens(settings)
        assert settings.oauth2 is not None

        def say(text: str) -> None:
            err.print(text, markup=False)

        try:
            signed = log_in(
                settings.oauth2,
                tokens.account,
                tokens.file,
                say=say,
                browser=None if no_browser else webbrowser.open,
                paste=(lambda prompt: typer.prompt(prompt, err=True)) if no_browser else None,
            )
        except SignInFailed as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(1) from None
    out.print(f"Signed in as {signed.account}; kept in {tokens.file.location}", markup=False)
    if signed.account and signed.account.lower() != tokens.account.lower():
        err.print(
            f"warning: you signed in as {signed.account}, but [imap]/[smtp] username is "
            f"{tokens.account}: the mail servers will refuse the login unless that account may "
            "use this mailbox",
            markup=False,
        )
    out.print("A running daemon picks the new sign-in up within a minute.", markup=False)


@auth_app.command("status")
def auth_status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Who is signed in, the scopes, when the access token expires, where the token is kept."""
    with reported():
        settings = context_of(ctx).settings()
        tokens = _tokens(settings)
        status = tokens.status()
    sign_in, oauth2 = status.sign_in, settings.oauth2
    assert oauth2 is not None

    def when(seconds: float) -> str | None:
        if not seconds:
            return None
        return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")

    fields = {
        "state": status.summary,
        "account": (sign_in.account if sign_in else "") or tokens.account,
        "provider": oauth2.provider,
        "client_id": oauth2.client_id,
        "scopes": sign_in.scopes if sign_in else [],
        "signed_in_at": when(sign_in.signed_in_at) if sign_in else None,
        "access_token_expires_at": when(sign_in.expires_at) if sign_in else None,
        "last_refresh": when(sign_in.last_refresh) if sign_in else None,
        "refused": sign_in.refused_reason if sign_in and sign_in.refused_at else None,
        "kept_in": status.location,
    }
    if as_json:
        print_json(fields)
        return
    for key, value in fields.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        out.print(f"{key.replace('_', ' ') + ':':<25}{shown or '-'}", markup=False)
    if status.needed:
        raise typer.Exit(1)


@auth_app.command("logout")
def auth_logout(ctx: typer.Context) -> None:
    """Forget the sign-in kept on this machine (sending and watching stop until the next login)."""
    with reported():
        settings = context_of(ctx).settings()
        tokens = _tokens(settings)
        removed = tokens.file.remove()
    if not removed:
        out.print("Not signed in; nothing to forget.", markup=False)
        return
    out.print(f"Signed out: {tokens.file.path} removed.", markup=False)
    if tokens.file.credential is not None and tokens.file.credential.is_file():
        err.print(
            f"warning: the credential {tokens.file.credential} still holds a refresh token; "
            "remove it from the service's LoadCredential= too",
            markup=False,
        )
    out.print(
        "To revoke outreach's access at the provider too: Microsoft, "
        "https://myaccount.microsoft.com (Apps and devices); Google, "
        "https://myaccount.google.com/permissions.",
        markup=False,
    )
