"""The daemon's commands: ``run`` (the service) and ``status``."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import typer

from outreach.cli.common import app, context_of, out, print_json, reported
from outreach.cli.outbound import NowOption, parse_now
from outreach.errors import ConfigError, OutreachError

if TYPE_CHECKING:
    from outreach.services.status import Status


log = logging.getLogger("outreach.daemon")
NOT_RUNNING = 3  # the LSB status code for "program is not running"


@app.command("run")
def run(ctx: typer.Context) -> None:
    """Run the daemon: send due steps every minute, watch the inbox, email a daily digest.

    This is what the systemd service runs (outreach.service). It tells systemd it is ready
    only after the config, templates, database and mail logins are checked. SIGTERM or
    Ctrl-C stops it after the message in flight; SIGHUP reloads config and templates.
    """
    with reported():
        from outreach.runtime.daemon import run_daemon

        try:
            code = run_daemon(context_of(ctx).config_path)
        except OutreachError as exc:
            # Into the log too, at error priority, so journalctl -p err shows why it stopped.
            lines = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
            for line in lines:
                log.error("can't start: %s", line)
            code = 2
    raise typer.Exit(code)


@app.command("status")
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    now: NowOption = None,
) -> None:
    """Is the daemon running; last send pass and inbox sync; what is due; the pipeline.

    Exits 3 when no daemon is running on this database.
    """
    with reported():
        from outreach.services.status import gather_status

        state = context_of(ctx)
        settings = state.settings()
        found = gather_status(state.store(), settings, parse_now(now, settings))
    if as_json:
        print_json(found.to_json())
    else:
        _print_status(found, ZoneInfo(settings.practice.timezone))
    if not found.running:
        raise typer.Exit(NOT_RUNNING)


def _print_status(found: Status, zone: ZoneInfo) -> None:
    def when(value: datetime | None) -> str:
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z") if value else "never"

    if found.running:
        out.print(f"daemon:        running (pid {found.pid}, since {when(found.since)})")
    else:
        out.print("daemon:        not running")
    summary = f" ({found.last_dispatch_summary})" if found.last_dispatch_summary else ""
    out.print(f"last dispatch: {when(found.last_dispatch)}{summary}", markup=False)
    out.print(f"last inbox:    {when(found.last_sync)}", markup=False)
    out.print(f"last reply:    {when(found.last_reply)}", markup=False)
    next_send = (
        f" (next send {found.next_send.astimezone(zone):%a %Y-%m-%d %H:%M %Z})"
        if found.next_send
        else ""
    )
    out.print(f"due today:     {found.due_today}{next_send}", markup=False)
    if found.held_contacts:
        noun = "contact waits" if found.held_contacts == 1 else "contacts wait"
        out.print(
            f"held:          {found.held_contacts} imported {noun} for your review: "
            "outreach approve --segment SEGMENT (or EMAIL..., or --all)",
            markup=False,
        )
    if found.needs_data:
        what = (
            "contact lacks a field its templates use and waits"
            if found.needs_data == 1
            else "contacts lack a field their templates use and wait"
        )
        out.print(
            f"needs data:    {found.needs_data} {what}: outreach contacts list, then "
            "outreach contacts edit EMAIL --set FIELD=VALUE",
            markup=False,
        )
    if found.sign_in_needed:
        out.print(f"SIGN-IN: {found.sign_in} (sending and watching wait)", markup=False)
    elif found.sign_in:
        out.print(f"sign-in:       {found.sign_in} (outreach auth status)", markup=False)
    _print_pauses(found)
    if found.held_for_review:
        out.print(
            f"review:        {found.held_for_review} message(s) outreach was not sure about "
            "changed nothing yet: outreach inbox review",
            markup=False,
        )
    problems = ", ".join(f"{n} {state}" for state, n in sorted(found.outbox_problems.items()))
    out.print(f"outbox:        {problems or 'no problems'}", markup=False)
    if found.outbox_problems.get("unknown"):
        out.print("  unknown sends: outreach outbox list --state unknown", markup=False)
    if found.unprocessable:
        out.print(
            f"inbox:         {found.unprocessable} message(s) this week outreach could not "
            "handle (no effect; see outreach report)",
            markup=False,
        )
    stages = sorted({s for counts in found.pipeline.values() for s in counts})
    if not stages:
        out.print("pipeline:      no contacts yet (outreach contacts import FILE)")
        return
    from rich.table import Table

    table = Table(title="pipeline", title_justify="left")
    table.add_column("segment")
    for stage in stages:
        table.add_column(stage, justify="right")
    for segment, counts in sorted(found.pipeline.items()):
        table.add_row(segment, *(str(counts.get(s, 0)) for s in stages))
    out.print(table)


def _print_pauses(found: Status) -> None:
    if found.sending_paused:
        out.print(f"SENDING PAUSED: {found.sending_paused}", markup=False)
        fix = (
            "it lifts itself then; outreach sending resume lifts it sooner"
            if found.sending_paused_until
            else "outreach sending resume, once the cause is fixed"
        )
        out.print(f"  ({fix})", markup=False)
    for domain, why in sorted(found.paused_domains.items()):
        out.print(f"PAUSED TO {domain}: {why}", markup=False)
        out.print(f"  (outreach sending resume --domain {domain}, once fixed)", markup=False)
