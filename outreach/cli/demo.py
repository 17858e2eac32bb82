"""``outreach demo``: the whole loop on an embedded mail setup, narrated."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from outreach.cli.common import app, out, reported


@app.command("demo")
def demo(
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir", help="Where to create the demo's folder (default: the system temp folder)."
        ),
    ] = None,
) -> None:
    """See the whole loop in a minute: sample sources in 9 segments get intros and follow-ups
    from an SMTP server inside this process; some reply, one is away, one bounces, one opts
    out, one refers. Simulated business days pass in seconds; nothing leaves this machine."""
    from outreach.runtime.demo import run_demo

    with reported():
        result = run_demo(directory, lambda line: out.print(line, markup=False))
    from rich.table import Table

    table = Table(title="the pipeline after the demo", title_justify="left")
    for column in ("source", "segment", "stage", "paused until"):
        table.add_column(column)
    for row in result.final:
        table.add_row(*row)
    out.print(table)
    out.print(f"every email is a file: {result.mail}/<address>/new/", markup=False)
    out.print(f"the practice's inbox: {result.practice_inbox}/new/", markup=False)
    config = result.root / "config" / "outreach.toml"
    out.print(f"look around: outreach -c {config} report", markup=False)
    out.print(
        f"             outreach -c {config} contacts show alma.reyes@northbaypsych.example.com",
        markup=False,
    )
