"""``outreach init``: a new practice folder from a few answers (prompted, or given as flags)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from outreach.cli.common import app, err, out, reported

Flag = Annotated[str | None, typer.Option(show_default=False)]


@app.command("init")
def init(
    directory: Annotated[
        Path, typer.Argument(help="The new practice folder (default: here).")
    ] = Path(),
    practice_name: Flag = None,
    therapist: Flag = None,
    ideal_client: Flag = None,
    method: Flag = None,
    result: Flag = None,
    postal_address: Flag = None,
    sender: Flag = None,
    provider: Flag = None,
    smtp_host: Flag = None,
    imap_host: Flag = None,
    timezone: Flag = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite files that already exist.")
    ] = False,
    non_interactive: Annotated[
        bool,
        typer.Option("--non-interactive", help="Never prompt: every answer comes from a flag."),
    ] = False,
) -> None:
    """Start a practice: config/outreach.toml (every key commented), the starter templates
    for nine kinds of referral source, and a sample contacts.csv.

    Asks for what it needs (or takes it from the flags): practice, therapist, ideal client,
    method, main result, postal address, sender address, mail provider (gmail,
    microsoft365...; its servers and sign-in come with it), SMTP and IMAP hosts for any other
    provider, time zone.
    Existing files are never overwritten without --force.
    """
    from outreach.runtime import init as starter

    given = {
        "practice_name": practice_name,
        "therapist": therapist,
        "ideal_client": ideal_client,
        "method": method,
        "result": result,
        "postal_address": postal_address,
        "sender": sender,
        "provider": provider,
        "smtp_host": smtp_host,
        "imap_host": imap_host,
        "timezone": timezone,
    }
    with reported():
        if not non_interactive:
            for name, question in starter.QUESTIONS.items():
                if not starter.asked(name, given):
                    continue
                default = starter.guess_provider(given["sender"]) if name == "provider" else None
                given[name] = _ask(name, question, given[name], starter.check_answer, default)
        answers = starter.answers_from(given)
        written = starter.init_project(directory, answers, force=force)
    config = directory / "config" / "outreach.toml"
    out.print(f"wrote {len(written)} files in {directory.resolve()}:", markup=False)
    out.print(f"  {config}  (the configuration; every key is commented)", markup=False)
    out.print(
        f"  {directory / 'templates'}/  (emails for 9 kinds of referral source)", markup=False
    )
    out.print(
        f"  {directory / 'contacts.csv'}  (sample contacts: replace with yours)", markup=False
    )
    out.print("next:", markup=False)
    from outreach.config.providers import PRESETS

    preset = PRESETS.get(answers.provider)
    if preset is not None and preset.auth == "oauth2":
        sign_in = [
            f"$EDITOR {config}   # [oauth2] client_id: README, 'Signing in with OAuth2'",
            f"outreach -c {config} auth login",
        ]
    else:
        sign_in = ["export OUTREACH_SMTP__PASSWORD=... OUTREACH_IMAP__PASSWORD=..."]
    for step in (
        f"$EDITOR {config}   # check the segments' wording; add phone and website",
        *sign_in,
        f"outreach -c {config} config check --connect",
        f"outreach -c {config} contacts import YOUR-CONTACTS.csv",
        f"outreach -c {config} templates check && outreach -c {config} plan --days 14",
        "then install the service: README, 'Running as a service'",
    ):
        out.print(f"  {step}", markup=False)


def _ask(
    name: str,
    question: str,
    value: str | None,
    check: Callable[[str, str], str],
    default: str | None = None,
) -> str:
    """Prompt until the answer passes ``check``; a valid flag's value is not asked again."""
    default = "America/New_York" if name == "timezone" else default
    while True:
        if value is None:
            value = typer.prompt(question, default=default)
        try:
            return check(name, value)
        except ValueError as exc:
            err.print(f"{question}: {exc}", markup=False)
            value = None
