"""The report command: text, JSON and HTML."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from outreach.cli.common import (
    app,
    context_of,
    err,
    out,
    print_json,
    reported,
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
        from outreach.services.contacts import resolve_segment

        segment = resolve_segment(settings, segment) if segment is not None else None
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
    from outreach.mail.notices import plural, when_local

    out.print(
        f"Generated {when_local(built.local_time)} ({built.timezone}).",
        markup=False,
    )
    if built.is_empty:
        out.print(
            "No contacts yet: import your referral sources with "
            "`outreach contacts import FILE.csv`.",
            markup=False,
        )
        return
    from rich.table import Table

    funnel = Table(
        title="Funnel by segment (each rate is of the previous stage)", title_justify="left"
    )
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
    for f in built.active_segments:
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
    if built.empty_segments:
        out.print(built.empty_segments, markup=False)
    labels = {s.segment: s.label for s in built.segments}
    steps = Table(title="Reply rate per step", title_justify="left")
    for column in ("segment", "step", "sent", "replies", "reply rate"):
        steps.add_column(column)
    for s in built.active_steps:
        steps.add_row(
            labels.get(s.segment, s.segment),
            s.name or str(s.step),
            str(s.sent),
            str(s.replies),
            _pct(s.reply_rate),
        )
    out.print(steps)
    median = built.median_hours_to_first_reply
    first_reply = (
        "n/a"
        if median is None
        else (f"{median:.0f} h" if median < 48 else f"{median / 24:.1f} days")
    )
    out.print(
        f"Median time to a first reply: {first_reply}; "
        f"{plural(built.bounces, 'bounce')}; {plural(built.opt_outs, 'opt-out')}; "
        f"{built.paused} paused.",
        markup=False,
    )
    if built.attribution:
        sources = Table(title="Referrals by source", title_justify="left")
        for column in ("source", "segment", "referrals", "first reply drawn by"):
            sources.add_column(column, overflow="fold")
        for a in built.attribution:
            sources.add_row(
                f"{a.name} <{a.email}>",
                labels.get(a.segment, a.segment),
                str(a.referrals),
                a.first_reply_to or "not by email",
            )
        out.print(sources)
    else:
        out.print("No referrals recorded yet.", markup=False)
    out.print("Needs attention:" if built.attention else "Needs attention: nothing.", markup=False)
    for item in built.attention:
        key = f" (Message-ID {item.message_key})" if item.message_key else ""
        out.print(f"  {item.kind}: {item.subject}: {item.detail}{key}", markup=False)
        if item.command:
            out.print(f"    -> {item.command}", markup=False)
