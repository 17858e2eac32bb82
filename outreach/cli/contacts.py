"""Commands for the configuration, the database, contacts, stages and referrals."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from outreach.cli.common import (
    PROGRESS_MIN_BYTES,
    config_app,
    contacts_app,
    context_of,
    db_app,
    err,
    out,
    print_json,
    referrals_app,
    reported,
    require_segment,
    stage_app,
    utc_now,
)
from outreach.errors import (
    ConfigError,
    MailServerUnusable,
)

if TYPE_CHECKING:
    from outreach.config import Server


# --- config ---------------------------------------------------------------------------------


@config_app.command("check")
def config_check(
    ctx: typer.Context,
    connect: Annotated[
        bool,
        typer.Option(
            "--connect",
            help="Also log in to the SMTP and IMAP servers and open the watched folders.",
        ),
    ] = False,
) -> None:
    """Validate the config file; list every problem with its key path (exit 2 if any)."""
    with reported():
        from outreach.config.loading import permission_warnings
        from outreach.mail import check as mailcheck
        from outreach.mail.connections import sign_in

        settings = context_of(ctx).settings()
        tokens = sign_in(settings)
        logins, problems = [], []
        if connect:
            checks: list[Callable[[], str]] = [
                lambda: mailcheck.check_smtp(settings.smtp, tokens),
                lambda: mailcheck.check_imap(settings.imap, tokens),
            ]
            for check in checks:
                try:
                    logins.append(check())
                except MailServerUnusable as exc:
                    problems.append(str(exc))
            if problems:
                raise ConfigError(problems)
    steps = sum(len(s.sequence) for s in settings.segments.values())
    out.print(f"{settings.path}: valid", markup=False)
    out.print(f"  practice: {settings.practice.name} ({settings.practice.timezone})", markup=False)
    out.print(
        f"  sender:   {settings.sender.from_name} <{settings.sender.from_address}>", markup=False
    )
    if settings.mailbox.provider != "custom":
        out.print(f"  mailbox:  {settings.mailbox.provider} (preset)", markup=False)
    signed_in = tokens.status().summary if tokens is not None else ""
    imap = settings.imap
    out.print(
        f"  smtp:     {settings.smtp.host}:{settings.smtp.effective_port} "
        f"({settings.smtp.security}); {_login(settings.smtp, signed_in)}",
        markup=False,
    )
    out.print(
        f"  imap:     {imap.host}:{imap.effective_port} ({imap.security}); "
        f"{_login(imap, signed_in)}; watching {', '.join(imap.folders)}",
        markup=False,
    )
    if imap.server_saves_sent or imap.save_sent:
        who = "the provider files" if imap.server_saves_sent else "outreach files"
        folder = repr(imap.sent_folder) if imap.sent_folder else "the folder marked \\Sent"
        out.print(f"  sent:     {who} a copy of each message in {folder}", markup=False)
    out.print(f"  storage:  {settings.database_label}", markup=False)
    out.print(
        f"  segments: {len(settings.segments)} ({', '.join(settings.segments)}), "
        f"{steps} sequence steps",
        markup=False,
    )
    for line in logins:
        out.print(f"  ok: {line}", markup=False)
    for warning in permission_warnings(settings):
        err.print(f"warning: {warning}", markup=False)


def _login(server: Server, signed_in: str) -> str:
    if server.auth == "oauth2":
        return f"auth oauth2 as {server.username} ({signed_in})"
    return f"password {'set' if server.password is not None else 'not set'}"


# --- db -------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Migrate the database to the newest schema (every command also does this at start)."""
    with reported():
        from outreach.store.database import Store

        store = Store(context_of(ctx).settings().database_url)
        try:
            before, after = store.upgrade()
        finally:
            store.close()
    if before == after:
        out.print(f"{store.label}: already at schema {after}", markup=False)
    else:
        out.print(f"{store.label}: schema {before or 'empty'} -> {after}", markup=False)


# --- contacts -------------------------------------------------------------------------------


@contacts_app.command("import")
def contacts_import(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="A CSV file (UTF-8, with a header line).", dir_okay=False)
    ],
    update: Annotated[
        bool,
        typer.Option(
            "--update", help="Update contacts that already exist instead of skipping them."
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check and count, change nothing.")
    ] = False,
    segment: Annotated[
        str | None,
        typer.Option(
            "--segment",
            help="Segment for every row whose file has no segment column or an empty cell.",
        ),
    ] = None,
) -> None:
    """Import referral sources from CSV: all rows or none, every problem with line and column."""
    with reported():
        from outreach.services import contacts

        state = context_of(ctx)
        settings = state.settings()
        require_segment(settings, segment)
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise ConfigError([f"Can't read {file}: {exc.strerror}."]) from None
        store = state.store()
        with _progress(len(data)) as progress:
            summary = contacts.import_contacts(
                store,
                settings.the_pipeline,
                list(settings.segments),
                data,
                source=file.name,
                now=utc_now(),
                update=update,
                dry_run=dry_run,
                default_segment=segment,
                progress=progress,
            )
    verb = "would import" if dry_run else "imported"
    out.print(
        f"{summary.source}: {summary.rows} contacts read; {verb} {summary.created}", markup=False
    )
    for name, count in sorted(summary.by_segment.items()):
        out.print(f"  {name}: {count} new", markup=False)
    if update:
        verb = "would update" if dry_run else "updated"
        out.print(
            f"  {verb} {summary.updated}, {summary.unchanged} already up to date", markup=False
        )
    elif summary.skipped_existing:
        out.print(
            f"  skipped {summary.skipped_existing} already in the store "
            "(use --update to update them)",
            markup=False,
        )
    if dry_run:
        out.print("dry run: nothing was changed", markup=False)


@contextmanager
def _progress(size: int) -> Iterator[Callable[[int, int], None] | None]:
    if size < PROGRESS_MIN_BYTES or not err.is_terminal:
        yield None
        return
    columns = (
        TextColumn("checking rows"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("import", total=None)

        def report(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield report


@contacts_app.command("list")
def contacts_list(
    ctx: typer.Context,
    segment: Annotated[str | None, typer.Option("--segment", help="Only this segment.")] = None,
    stage: Annotated[str | None, typer.Option("--stage", help="Only this stage.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List contacts by segment and stage, as a table or JSON."""
    with reported():
        from outreach.services import contacts

        state = context_of(ctx)
        settings = state.settings()
        if stage is not None:
            settings.the_pipeline.require(stage)
        require_segment(settings, segment)
        found = contacts.list_contacts(state.store(), segment=segment, stage=stage)
    if as_json:
        print_json([c.to_json() for c in found])
        return
    noun = "contact" if len(found) == 1 else "contacts"
    table = Table(title=f"{len(found)} {noun}", title_justify="left")
    table.add_column("email", overflow="fold")  # an address is never cut short
    for column in ("name", "organization", "segment", "stage"):
        table.add_column(column)
    for c in found:
        table.add_row(
            c.email,
            c.name if c.name != c.email else "",
            c.organization or "",
            settings.segments[c.segment].label if c.segment in settings.segments else c.segment,
            c.stage,
        )
    out.print(table)


@contacts_app.command("show")
def contacts_show(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The contact's email address.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """Show one contact with its whole history of stage changes and referrals."""
    with reported():
        from outreach.services import contacts

        history = contacts.show_contact(context_of(ctx).store(), email)
    if as_json:
        print_json(history.to_json())
        return
    c = history.contact
    lines = [
        f"{c.name} <{c.email}>",
        f"  organization: {c.organization or '-'}",
        f"  title:        {c.title or '-'}",
        f"  segment:      {c.segment}",
        f"  stage:        {c.stage}",
        f"  timezone:     {c.timezone or '(practice)'}",
        f"  tags:         {', '.join(c.tags) or '-'}",
    ]
    lines += [f"  {key}: {value}" for key, value in sorted(c.custom.items())]
    lines.append("timeline (UTC):")
    lines += [f"  {at:%Y-%m-%d %H:%M}  {what}" for at, what in history.timeline()]
    for line in lines:
        out.print(line, markup=False)


@contacts_app.command("export")
def contacts_export(
    ctx: typer.Context,
    file: Annotated[
        Path | None, typer.Argument(help="Write here instead of standard output.", dir_okay=False)
    ] = None,
) -> None:
    """Export every contact as CSV that re-imports losslessly."""
    with reported():
        from outreach.services import contacts

        store = context_of(ctx).store()
        if file is None:
            contacts.export_contacts(store, sys.stdout)
            return
        try:
            with file.open("w", encoding="utf-8", newline="") as handle:
                count = contacts.export_contacts(store, handle)
        except OSError as exc:
            raise ConfigError([f"Can't write {file}: {exc.strerror}."]) from None
    err.print(f"exported {count} contacts to {file}", markup=False)


# --- stage, referrals -----------------------------------------------------------------------


@stage_app.command("set")
def stage_set(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The contact's email address.")],
    stage: Annotated[str, typer.Argument(help="The new stage, e.g. engaged or do_not_contact.")],
    note: Annotated[
        str,
        typer.Option(
            "--note",
            help="Why; kept in the contact's history. Never write anything about a client.",
        ),
    ] = "",
) -> None:
    """Move a contact to another stage by hand; the change and note go into its history."""
    with reported():
        from outreach.services import workflow

        state = context_of(ctx)
        change, ruled = workflow.set_stage_by_hand(
            state.store(), state.settings(), state.smtp(), email, stage, now=utc_now(), note=note
        )
    if change is None:
        out.print(f"{email} is already {stage}", markup=False)
    else:
        out.print(f"{email}: {change.from_stage} -> {change.to_stage}{ruled}", markup=False)


@referrals_app.command("add")
def referrals_add(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The referral source's email address.")],
    on: Annotated[
        datetime | None,
        typer.Option("--date", formats=["%Y-%m-%d"], help="When it arrived (default: today)."),
    ] = None,
    note: Annotated[
        str,
        typer.Option(
            "--note",
            help="A note for you, e.g. 'by phone'. NEVER "
            "write a client's name or any detail about the client: "
            "this is not a clinical record.",
        ),
    ] = "",
) -> None:
    """Record a referral from a source and move it to 'referring'.

    Never write a client's name or any detail about the client here.
    """
    received: date = on.date() if on else utc_now().date()
    with reported():
        from outreach.services import workflow

        state = context_of(ctx)
        change, ruled = workflow.record_referral(
            state.store(),
            state.settings(),
            state.smtp(),
            email,
            received_on=received,
            now=utc_now(),
            note=note,
        )
    moved = f"; {change.from_stage} -> {change.to_stage}" if change else ""
    out.print(f"{email}: referral on {received} recorded{moved}{ruled}", markup=False)
