"""Commands for templates, previews, plans, sending and the outbox."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import typer

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


def parse_now(value: str | None, settings: Settings) -> datetime:
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
        waiting = require_templates(parts.store, parts.settings, parts.templates, consequence=None)
    steps = sum(len(s.sequence) for s in parts.settings.segments.values())
    if not waiting:
        out.print(f"templates: all {steps} sequence steps render for every contact", markup=False)
        return
    out.print(
        f"templates: all {steps} sequence steps render; {len(waiting)} contact(s) need data "
        "(they wait, the others are sent; add it with outreach contacts edit EMAIL --set "
        "FIELD=VALUE):",
        markup=False,
    )
    for item in waiting:
        out.print(f"  {item}", markup=False)


@app.command("preview")
def preview(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The contact's email address.")],
    step: Annotated[
        str | None,
        typer.Option(
            "--step",
            help="Sequence step (1 = intro), `nurture` (the check-in), or a rule reply's "
            "template (e.g. thank_you); default: the contact's next step.",
        ),
    ] = None,
    raw: Annotated[
        bool,
        typer.Option("--raw", help="Print the exact bytes (MIME encoded) instead of the text."),
    ] = False,
    send_to_me: Annotated[
        bool,
        typer.Option(
            "--send-to-me",
            help='Send it to the practice (sender.notify_address), "[TEST] " before the subject; '
            "records nothing.",
        ),
    ] = False,
    now: NowOption = None,
) -> None:
    """Show the message a step would send a contact: headers and body as text (--raw: the
    exact bytes); any step, sent or not; or --send-to-me as a test."""
    with reported():
        from outreach.services import forecast

        state = context_of(ctx)
        message = forecast.preview(
            state.dispatcher(), email, step=step, now=parse_now(now, state.settings())
        )
        if send_to_me:
            import asyncio

            from outreach.services.review import send_to_me as send

            to = asyncio.run(send(state.settings(), state.smtp(), message))
            out.print(f"sent to {to}: [TEST] {message.subject}", markup=False)
            return
    if raw:
        sys.stdout.write(message.data.decode("utf-8", errors="replace").replace("\r\n", "\n"))
    else:
        sys.stdout.write(forecast.readable(message.data))


@app.command("plan")
def plan(
    ctx: typer.Context,
    days: Annotated[int, typer.Option("--days", min=1, max=366, help="How far ahead.")] = 7,
    now: NowOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """Forecast what would be sent when, honoring windows, holidays, caps and pacing."""
    with reported():
        from outreach.services import forecast, outbox

        state = context_of(ctx)
        planned = forecast.plan(state.dispatcher(), now=parse_now(now, state.settings()), days=days)
        zone = ZoneInfo(state.settings().practice.timezone)
        paused = outbox.sending_pause(state.store(), parse_now(now, state.settings()))
    if paused is not None and not as_json:
        err.print(f"sending is paused: {paused}", markup=False)
    if as_json:
        print_json([p.to_json() for p in planned])
        return
    from rich.table import Table

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
        when = None if now is None else parse_now(now, parts.settings)
        import asyncio

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
    from rich.table import Table

    from outreach.domain.sequencing import step_label

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


@sending_app.command("pause")
def sending_pause(
    ctx: typer.Context,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            help="Lift the pause by itself then (a date or ISO 8601 time in the practice's "
            "time zone, e.g. 2026-03-09 or 2026-03-09T13:00); default: until `sending resume`.",
        ),
    ] = None,
    now: NowOption = None,
) -> None:
    """Pause all sending by hand (nothing goes out; replies are still read), until
    `outreach sending resume` or, with --until, until then."""
    with reported():
        from outreach.domain.fields import parse_local_time
        from outreach.services import outbox

        state = context_of(ctx)
        zone = ZoneInfo(state.settings().practice.timezone)
        end = None if until is None else parse_local_time(until, zone, "--until").astimezone(UTC)
        pause = outbox.pause_sending(
            state.store(), parse_now(now, state.settings()), until=end, zone=zone
        )
    if pause.earlier:
        out.print(
            f"sending was already paused until resumed by hand ({pause.reason}); "
            "it stays so: outreach sending resume, once the cause is fixed",
            markup=False,
        )
    elif pause.until is not None:
        out.print(f"sending {pause.reason} (outreach sending resume lifts it sooner)", markup=False)
    else:
        out.print(f"sending {pause.reason}: outreach sending resume lifts it", markup=False)


@app.command("approve")
def approve(
    ctx: typer.Context,
    emails: Annotated[
        list[str] | None,
        typer.Argument(metavar="EMAIL", help="The held contacts to approve."),
    ] = None,
    segment: Annotated[
        str | None,
        typer.Option("--segment", help="Approve every held contact of this segment (or label)."),
    ] = None,
    everyone: Annotated[bool, typer.Option("--all", help="Approve every held contact.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List who would be approved; change nothing.")
    ] = False,
    now: NowOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Let contacts held for review (sending.hold_new in the config) be sent to: their first
    step goes out in the next sending window."""
    with reported():
        import getpass

        from outreach.services import review

        state = context_of(ctx)
        try:
            who = getpass.getuser()
        except (KeyError, OSError):  # no name for this uid (a container)
            who = "hand"
        done = review.approve(
            state.store(),
            state.settings(),
            now=parse_now(now, state.settings()),
            by=who,
            segment=segment,
            emails=emails or [],
            everyone=everyone,
            dry_run=dry_run,
        )
    if as_json:
        print_json({"approved": done.approved, "not_held": done.not_held, "dry_run": dry_run})
        return
    verb = "would approve" if dry_run else "approved"
    for address in done.approved:
        out.print(f"{verb} {address}", markup=False)
    for address in done.not_held:
        err.print(f"{address}: not held for review (nothing to approve)", markup=False)
    count = len(done.approved)
    noun = "contact" if count == 1 else "contacts"
    if dry_run:
        out.print(f"{count} {noun} would be approved (nothing changed)", markup=False)
    else:
        out.print(
            f"{count} {noun} approved: their first step goes out in the next sending window",
            markup=False,
        )
