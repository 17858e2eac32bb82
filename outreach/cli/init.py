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
    holidays_country: Annotated[
        str | None,
        typer.Option(
            help="Country whose public holidays are skipped (two letters, e.g. US; 'none').",
            show_default=False,
        ),
    ] = None,
    holidays_subdivision: Annotated[
        str | None,
        typer.Option(
            help="State or province for its own holidays (e.g. WI); without it, national "
            "holidays only.",
            show_default=False,
        ),
    ] = None,
    segment_profiles: Annotated[
        str | None,
        typer.Option(
            help="'proposed': each segment's wording phrased around your ideal client and "
            "result (default); 'todo': TODO values to fill in (nothing is sent until then).",
            show_default=False,
        ),
    ] = None,
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
    provider, time zone, country and state or province for holidays; then proposes each
    segment's wording around your answers (keep, edit, or write TODO values).
    Imported contacts wait for `outreach approve` (hold_new = true).
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
        "holidays_country": holidays_country,
        "holidays_subdivision": holidays_subdivision,
        "segment_profiles": segment_profiles,
    }
    profiles: dict[str, dict[str, str]] = {}
    with reported():
        if not non_interactive:
            profiles = _interview(given)
        answers = starter.answers_from(given, profiles=profiles)
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
    where = "-".join(filter(None, (answers.holidays_country, answers.holidays_subdivision)))
    out.print(
        f"  holidays: {where or 'none'}; new contacts wait for review (outreach approve)"
        + (
            "; segment wording: TODO (nothing is sent until you write it)"
            if answers.segment_profiles == "todo"
            else ""
        ),
        markup=False,
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


def _interview(given: dict[str, str | None]) -> dict[str, dict[str, str]]:
    """Ask every question a flag didn't answer (into ``given``); the segment profiles the
    therapist edited at the prompt."""
    from outreach.runtime import init as starter

    for name, question in starter.QUESTIONS.items():
        if not starter.asked(name, given):
            continue
        if name == "holidays_subdivision":
            country = starter.check_country(given["holidays_country"] or "")
            if not starter.subdivisions(country) and given[name] is None:
                continue  # a country without holidays of its own per region

            def in_country(_name: str, value: str, country: str = country) -> str:
                return starter.check_subdivision(country, value) or "none"

            given[name] = _ask(name, question, given[name], in_country, None)
            continue
        if name == "segment_profiles":
            if given[name] is None:
                _show_proposals(given)
            given[name], edit = _profile_choice(question, given[name])
            if edit:
                return _edit_profiles(given)
            continue
        default = starter.guess_provider(given["sender"]) if name == "provider" else None
        checker = _check_country if name == "holidays_country" else starter.check_answer
        given[name] = _ask(name, question, given[name], checker, default)
    return {}


def _check_country(_name: str, value: str) -> str:
    from outreach.runtime import init as starter

    return starter.check_country(value) or "none"


def _proposals(given: dict[str, str | None]) -> dict[str, dict[str, str]]:
    from outreach.runtime import init as starter

    result = given.get("result") or ""
    return {
        segment: {k: text.format(result=result) for k, text in texts.items()}
        for segment, texts in starter.PROPOSALS.items()
    }


def _show_proposals(given: dict[str, str | None]) -> None:
    out.print("Proposed wording for each kind of referral source:", markup=False)
    for segment, profile in _proposals(given).items():
        out.print(f"  [{segment}]", markup=False)
        for key, text in profile.items():
            out.print(f"    {key} = {text}", markup=False)


def _profile_choice(question: str, value: str | None) -> tuple[str, bool]:
    """'proposed' or 'todo', and whether to edit the proposals now ('edit' at the prompt)."""
    from outreach.runtime import init as starter

    while True:
        if value is None:
            value = typer.prompt(question + ", or 'edit' to go through it now", default="proposed")
        if value.strip() == "edit":
            return "proposed", True
        try:
            return starter.check_answer("segment_profiles", value), False
        except ValueError as exc:
            err.print(f"{question}: {exc}", markup=False)
            value = None


def _edit_profiles(given: dict[str, str | None]) -> dict[str, dict[str, str]]:
    """Each proposed field at the prompt, the proposal as its default."""
    edited: dict[str, dict[str, str]] = {}
    for segment, profile in _proposals(given).items():
        edited[segment] = {}
        for key, text in profile.items():
            answer = _ask(key, f"{segment}.{key}", None, _one_line, text)
            if answer != text:
                edited[segment][key] = answer
    return edited


def _one_line(_name: str, value: str) -> str:
    value = value.strip()
    if not value or any(ord(c) < 32 for c in value):
        raise ValueError("must be one line of text")
    return value


def _ask(
    name: str,
    question: str,
    value: str | None,
    check: Callable[[str, str], str],
    default: str | None = None,
) -> str:
    """Prompt until the answer passes ``check``; a valid flag's value is not asked again."""
    from outreach.runtime import init as starter

    default = starter.DEFAULTS.get(name, default)
    while True:
        if value is None:
            value = typer.prompt(question, default=default)
        try:
            return check(name, value)
        except ValueError as exc:
            err.print(f"{question}: {exc}", markup=False)
            value = None
