"""The report command: text, JSON and HTML."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from outreach.cli.common import (
    app,
    context_of,
    err,
    out,
    print_json,
    reported,
    require_segment,
    utc_now,
)
from outreach.errors import (
    ConfigError,
)

if TYPE_CHECKING:
    from outreach.report import build as reporting


# --- report ---------------------------------------------------------------------------------


@app.command("report")
def report(
    ctx: typer.Context,
    since: Annotated[
        datetime | None,
        typer.Option(
            "--since",
            formats=["%Y-%m-%d"],
            help="Only sources enrolled (imported) on or after this date.",
        ),
    ] = None,
    segment: Annotated[str | None, typer.Option("--segment", help="Only this segment.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    stale_days: Annotated[
        int,
        typer.Option(
            "--stale-days",
            min=1,
            help="Flag sources that replied but are not engaged after this many days.",
        ),
    ] = 7,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            dir_okay=False,
            help="Also write a self-contained HTML report "
            "(charts, readable on a phone) to this file.",
        ),
    ] = None,
) -> None:
    """Funnel by segment, reply rate per step, referrals by source, and what needs attention."""
    with reported():
        from outreach.report import build as reporting
        from outreach.report.html import render_html

        state = context_of(ctx)
        settings = state.settings()
        now = utc_now()
        if since is not None and since.date() > now.date():
            raise ConfigError(
                [f"--since: {since.date()} is in the future; nothing has happened since then yet"]
            )
        require_segment(settings, segment)
        built = reporting.build_report(
            state.store(),
            settings,
            now=now,
            since=since.date() if since else None,
            segment=segment,
            stale_after_days=stale_days,
        )
        if html is not None:
            try:
                html.write_text(render_html(built, settings.practice.name), encoding="utf-8")
            except OSError as exc:
                raise ConfigError([f"Can't write {html}: {exc.strerror}."]) from None
    if as_json:
        print_json(built.to_json())
    else:
        _print_report_text(built)
    if html is not None:
        err.print(f"HTML report written to {html}", markup=False)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _print_report_text(built: reporting.Report) -> None:
    if built.is_empty:
        out.print(
            "No contacts yet: import your referral sources with "
            "`outreach contacts import FILE.csv`.",
            markup=False,
        )
        return
    funnel = Table(title="Funnel by segment (rate from the stage before)", title_justify="left")
    for column in (
        "segment",
        "contacts",
        "contacted",
        "replied",
        "engaged",
        "referring",
        "referrals",
    ):
        funnel.add_column(column)
    for f in built.segments:
        r = f.rates
        funnel.add_row(
            f.label,
            str(f.contacts),
            f"{f.contacted} ({_pct(r['contacted'])})",
            f"{f.replied} ({_pct(r['replied'])})",
            f"{f.engaged} ({_pct(r['engaged'])})",
            f"{f.referring} ({_pct(r['referring'])})",
            str(f.referrals),
        )
    out.print(funnel)
    steps = Table(title="Per sequence step", title_justify="left")
    for column in ("segment", "step", "template", "sent", "replies", "reply rate"):
        steps.add_column(column)
    for s in built.steps:
        steps.add_row(
            s.segment, str(s.step), s.template, str(s.sent), str(s.replies), _pct(s.reply_rate)
        )
    out.print(steps)
    median = built.median_hours_to_first_reply
    out.print(
        f"median time to first reply: {'n/a' if median is None else f'{median:.1f} h'}; "
        f"bounces {built.bounces}; opt-outs {built.opt_outs}; paused {built.paused}",
        markup=False,
    )
    if built.attribution:
        sources = Table(title="Referrals by source", title_justify="left")
        for column in ("source", "segment", "referrals", "first reply drawn by"):
            sources.add_column(column, overflow="fold")
        for a in built.attribution:
            sources.add_row(
                f"{a.name} <{a.email}>",
                a.segment,
                str(a.referrals),
                a.first_reply_to or "not by email",
            )
        out.print(sources)
    else:
        out.print("no referrals recorded yet", markup=False)
    out.print("needs attention:" if built.attention else "needs attention: nothing", markup=False)
    for item in built.attention:
        out.print(f"  {item.kind}: {item.subject}: {item.detail}", markup=False)
