"""Commands for templates, previews, plans, sending and the outbox."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from outreach.cli.common import (
    app,
    context_of,
    err,
    out,
    outbox_app,
    print_json,
    reported,
    sending_app,
    templates_app,
    utc_now,
)
from outreach.domain.sequencing import step_label
from outreach.errors import (
    ConfigError,
)

if TYPE_CHECKING:
    from outreach.config import Settings
    from outreach.services.dispatch import DispatchReport


# --- outbound -------------------------------------------------------------------------------

NowOption = Annotated[
    str | None,
    typer.Option(
        "--now",
        help="Pretend it is this time (ISO 8601; without an offset, the "
        "practice's time zone), for forecasts and tests.",
    ),
]


def _parse_now(value: str | None, settings: Settings) -> datetime:
    if value is None:
        return utc_now()
    from outreach.domain.fields import parse_local_time

    zone = ZoneInfo(settings.practice.timezone)
    return parse_local_time(value, zone, "--now").astimezone(UTC)


@templates_app.command("check")
def templates_check(ctx: typer.Context) -> None:
    """Render every template of every sequence for every contact of its segment."""
    with reported():
        from outreach.services.template_check import require_templates

        parts = context_of(ctx).parts()
        require_templates(parts.store, parts.settings, parts.templates, consequence=None)
    steps = sum(len(s.sequence) for s in parts.settings.segments.values())
    out.print(f"templates: all {steps} sequence steps render for every contact", markup=False)


@app.command("preview")
def preview(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The contact's email address.")],
    step: Annotated[
        int | None,
        typer.Option("--step", help="Sequence step (1 = intro); default: the contact's next one."),
    ] = None,
    now: NowOption = None,
) -> None:
    """Print the exact message, headers and body, that a step would send a contact."""
    with reported():
        from outreach.services import forecast

        state = context_of(ctx)
        data = forecast.preview(
            state.dispatcher(), email, step=step, now=_parse_now(now, state.settings())
        )
    sys.stdout.write(data.decode("utf-8", errors="replace").replace("\r\n", "\n"))


@app.command("plan")
def plan(
    ctx: typer.Context,
    days: Annotated[int, typer.Option("--days", min=1, max=366, help="How far ahead.")] = 7,
    now: NowOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """Forecast what would be sent when, honoring windows, holidays, caps and pacing."""
    with reported():
        from outreach.services import forecast

        state = context_of(ctx)
        planned = forecast.plan(
            state.dispatcher(), now=_parse_now(now, state.settings()), days=days
        )
        zone = ZoneInfo(state.settings().practice.timezone)
    if as_json:
        print_json([p.to_json() for p in planned])
        return
    table = Table(
        title=f"{len(planned)} sends in the next {days} days (times in {zone.key})",
        title_justify="left",
    )
    for column in ("when", "email", "segment", "step", "template"):
        table.add_column(column, overflow="fold")
    for p in planned:
        table.add_row(
            f"{p.at.astimezone(zone):%a %Y-%m-%d %H:%M}",
            p.email,
            p.segment,
            str(p.step),
            p.template,
        )
    out.print(table)


@app.command("send-due")
def send_due(
    ctx: typer.Context,
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            help="One pass, then exit (default: keep passing while sends are due within a minute).",
        ),
    ] = False,
    now: NowOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be sent; send and change nothing.")
    ] = False,
) -> None:
    """Send every step that is due now: the same pass the daemon runs every minute."""
    with reported():
        from outreach.services.dispatch import send_due as send
        from outreach.services.template_check import require_templates

        parts = context_of(ctx).parts()
        require_templates(
            parts.store,
            parts.settings,
            parts.templates,
            consequence="templates check failed: nothing is sent until every template renders",
        )
        when = None if now is None else _parse_now(now, parts.settings)
        report = asyncio.run(
            send(
                parts.dispatcher,
                now=when,
                once=once,
                dry_run=dry_run,
                on_pass=_print_report,
                on_wait=lambda: err.print(
                    "another dispatch pass (the daemon's, or another send-due) is running; "
                    "waiting for it to finish",
                    markup=False,
                ),
            )
        )
    if report.problems or report.paused or report.busy:
        raise typer.Exit(1)


def _print_report(report: DispatchReport) -> None:
    for _level, sentence in report.sentences(subjects=True):
        out.print(sentence, markup=False)
    for problem in report.problems:
        err.print(problem, markup=False)
    if report.paused:
        err.print(f"sending is paused: {report.paused}", markup=False)
    for domain, steps in sorted(report.held.items()):
        err.print(
            f"held {steps} step(s) to {domain}: sending there is paused "
            f"(outreach sending resume --domain {domain}, once fixed)",
            markup=False,
        )
    if report.busy:
        err.print(
            "another dispatch pass (the daemon's, or another send-due) is still running; "
            "nothing was sent: try again when it is done",
            markup=False,
        )
    if not (
        report.sent
        or report.reconciled
        or report.retrying
        or report.failed
        or report.unknown
        or report.finished
        or report.problems
        or report.paused
        or report.busy
        or report.held
    ):
        out.print("nothing due", markup=False)


@outbox_app.command("list")
def outbox_list(
    ctx: typer.Context,
    state_filter: Annotated[
        str | None,
        typer.Option(
            "--state", help="Only this state: sending, sent, retry, queued, failed, unknown."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List the delivery ledger, newest first; `unknown` rows need your decision."""
    with reported():
        from outreach.services import outbox

        entries = outbox.list_outbox(context_of(ctx).store(), state=state_filter)
    if as_json:
        print_json([e.to_json() for e in entries])
        return
    table = Table(title=f"{len(entries)} outbox rows", title_justify="left")
    for column in ("id", "state", "email", "step", "subject", "updated (UTC)", "note"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(
            str(e.id),
            e.state,
            e.email,
            step_label(e.step),
            e.subject,
            f"{e.updated_at:%Y-%m-%d %H:%M}",
            e.last_error,
        )
    out.print(table)


@outbox_app.command("resolve")
def outbox_resolve(
    ctx: typer.Context,
    outbox_id: Annotated[int, typer.Argument(metavar="ID", help="The row's id (outbox list).")],
    sent: Annotated[bool, typer.Option("--sent", help="It did arrive: record it as sent.")] = False,
    resend: Annotated[
        bool, typer.Option("--resend", help="It did not: send it again, with the same Message-ID.")
    ] = False,
) -> None:
    """Settle an `unknown` send after an interruption: --sent or --resend."""
    with reported():
        from outreach.services import outbox

        if sent == resend:
            raise ConfigError(["give exactly one of --sent or --resend"])
        result = outbox.resolve_outbox(context_of(ctx).store(), outbox_id, sent=sent, now=utc_now())
    out.print(f"outbox row {outbox_id}: {result}", markup=False)


@sending_app.command("resume")
def sending_resume(
    ctx: typer.Context,
    domain: Annotated[
        str | None,
        typer.Option(
            "--domain", help="Resume sending to this recipient domain only (a policy bounce)."
        ),
    ] = None,
) -> None:
    """Resume sending after a policy rejection paused it, once the cause is fixed: all
    sending, or with --domain the one recipient domain that refused us."""
    with reported():
        from outreach.services import outbox

        reason = outbox.resume_sending(context_of(ctx).store(), domain)
    what = f"sending to {domain.lower()}" if domain else "sending"
    out.print(
        f"{what} was not paused" if reason is None else f"{what} resumed (was paused: {reason})",
        markup=False,
    )
