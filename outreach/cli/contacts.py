"""Commands for the configuration, the database, contacts, stages and referrals."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

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
        Path,
        typer.Argument(
            help="A CSV file with a header line: your own, or a Google Contacts or Outlook "
            "export as it is.",
            dir_okay=False,
        ),
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
            help="Segment (name or label) for every row whose file has no segment column, "
            "or whose cell names none.",
        ),
    ] = None,
    segment_from: Annotated[
        str | None,
        typer.Option(
            "--segment-from",
            metavar="COLUMN",
            help="Read each row's segment from this column of labels (Google's Labels, "
            "Outlook's Categories); overrides [import] segment_column.",
        ),
    ] = None,
    encoding: Annotated[
        str | None,
        typer.Option(
            "--encoding",
            help="The file's text encoding, e.g. windows-1252 or utf-16 (default: "
            "[import] encoding, else detected).",
        ),
    ] = None,
) -> None:
    """Import referral sources from CSV: all rows or none, every problem with line and column.

    UTF-8 (with or without BOM), UTF-16 and Windows-1252 are detected. With [sending]
    hold_new, new contacts wait for 'outreach approve'.
    """
    with reported():
        from outreach.services import contacts

        state = context_of(ctx)
        settings = state.settings()
        names = contacts.segment_names_of(settings)
        default = contacts.resolve_segment(settings, segment) if segment is not None else None
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
                default_segment=default,
                progress=progress,
                names=names,
                segment_column=(
                    segment_from if segment_from is not None else settings.import_.segment_column
                ),
                encoding=encoding if encoding is not None else settings.import_.encoding,
                hold=settings.sending.hold_new,
            )
    verb = "would import" if dry_run else "imported"
    read_as = "" if summary.encoding == "UTF-8" else f" (read as {summary.encoding})"
    out.print(
        f"{summary.source}: {summary.rows} contacts read{read_as}; {verb} {summary.created}",
        markup=False,
    )
    for name, count in sorted(summary.by_segment.items()):
        label = settings.segments[name].label
        out.print(f"  {name}: {count} new ({label})", markup=False)
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
    if summary.skipped_suppressed:
        out.print(
            f"  skipped {summary.skipped_suppressed} suppressed (unsubscribed, bounced, or "
            "erased at their request): never contacted again",
            markup=False,
        )
    if summary.held:
        held = "would wait" if dry_run else "wait"
        out.print(
            f"  {summary.held} {held} for your review: "
            "outreach approve --segment NAME (or EMAIL...) lets them be sent to",
            markup=False,
        )
    if dry_run:
        out.print("dry run: nothing was changed", markup=False)


@contextmanager
def _progress(size: int) -> Iterator[Callable[[int, int], None] | None]:
    if size < PROGRESS_MIN_BYTES or not err.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("checking rows"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err.console, transient=True) as bar:
        task = bar.add_task("import", total=None)

        def report(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield report


@contacts_app.command("list")
def contacts_list(
    ctx: typer.Context,
    segment: Annotated[
        str | None, typer.Option("--segment", help="Only this segment (name or label).")
    ] = None,
    stage: Annotated[str | None, typer.Option("--stage", help="Only this stage.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List contacts by segment and stage, as a table or JSON; 'waiting' says which are held
    for review or need data."""
    with reported():
        from outreach.services import contacts

        state = context_of(ctx)
        settings = state.settings()
        if stage is not None:
            settings.the_pipeline.require(stage)
        if segment is not None:
            segment = contacts.resolve_segment(settings, segment)
        found = contacts.list_contacts(state.store(), segment=segment, stage=stage)
    if as_json:
        print_json([c.to_json() for c in found])
        return
    noun = "contact" if len(found) == 1 else "contacts"
    from rich.table import Table

    table = Table(title=f"{len(found)} {noun}", title_justify="left")
    table.add_column("email", overflow="fold")  # an address is never cut short
    # "waiting" only when some contact waits: a narrow terminal has no room for an empty column.
    waiting = any(c.waiting for c in found)
    for column in ("name", "organization", "segment", "stage", *(["waiting"] if waiting else [])):
        table.add_column(column)
    for c in found:
        table.add_row(
            c.email,
            c.name if c.name != c.email else "",
            c.organization or "",
            settings.segments[c.segment].label if c.segment in settings.segments else c.segment,
            c.stage,
            *([c.waiting] if waiting else []),
        )
    out.print(table)
    held = sum(1 for c in found if c.held_since is not None)
    if held:
        out.print(
            f"{held} held for your review: outreach approve --segment NAME (or EMAIL...)",
            markup=False,
        )


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
        *([f"  waiting:      {c.waiting}"] if c.waiting else []),
        f"  timezone:     {c.timezone or '(practice)'}",
        f"  tags:         {', '.join(c.tags) or '-'}",
    ]
    # A custom field may hold several lines (a postal address): its lines stay indented.
    lines += [
        f"  {key}: " + value.replace("\n", "\n    ") for key, value in sorted(c.custom.items())
    ]
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


@contacts_app.command("add")
def contacts_add(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The referral source's email address.")],
    segment: Annotated[str, typer.Option("--segment", help="Its segment (name or label).")],
    first_name: Annotated[str | None, typer.Option("--first-name")] = None,
    last_name: Annotated[str | None, typer.Option("--last-name")] = None,
    title: Annotated[
        str | None, typer.Option("--title", help="How to address them: Dr., Rabbi, Ms....")
    ] = None,
    organization: Annotated[str | None, typer.Option("--organization")] = None,
    timezone: Annotated[
        str | None, typer.Option("--timezone", help="IANA zone, if not the practice's.")
    ] = None,
    fields: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="FIELD=VALUE",
            help="Another field (tags, or a custom field such as years_in_practice); repeatable.",
        ),
    ] = None,
) -> None:
    """Add one referral source, checked as an import checks a row.

    With [sending] hold_new it waits for 'outreach approve'. An address that unsubscribed,
    bounced or was erased is refused.
    """
    given = {
        "first_name": first_name,
        "last_name": last_name,
        "title": title,
        "organization": organization,
        "timezone": timezone,
    }
    assignments = [f"{name}={value}" for name, value in given.items() if value is not None]
    with reported():
        from outreach.services import contacts

        state = context_of(ctx)
        settings = state.settings()
        assignments.append(f"segment={contacts.resolve_segment(settings, segment)}")
        added = contacts.add_contact(
            state.store(),
            settings.the_pipeline,
            contacts.segment_names_of(settings),
            email,
            [*assignments, *(fields or [])],
            now=utc_now(),
            hold=settings.sending.hold_new,
        )
    held = "; held for your review (outreach approve)" if added.held_since else ""
    out.print(f"added {added.email} to {added.segment}{held}", markup=False)


@contacts_app.command("edit")
def contacts_edit(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The contact's email address.")],
    fields: Annotated[
        list[str],
        typer.Option(
            "--set",
            metavar="FIELD=VALUE",
            help="first_name, last_name, title, organization, segment, timezone, tags, or a "
            "custom field; FIELD= clears it. Repeatable.",
        ),
    ],
) -> None:
    """Change fields of one contact; a contact that needed data is tried again."""
    with reported():
        from outreach.services import contacts

        state = context_of(ctx)
        edited = contacts.edit_contact(
            state.store(),
            contacts.segment_names_of(state.settings()),
            email,
            fields,
            now=utc_now(),
        )
    if not edited.changes:
        out.print(f"{edited.contact.email}: nothing changed", markup=False)
    for name, (before, after) in edited.changes.items():
        out.print(
            f"{edited.contact.email}: {name}: {_shown(before)} -> {_shown(after)}", markup=False
        )


def _shown(value: object) -> str:
    if value is None or value == []:
        return "(empty)"
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    return repr(value) if "\n" in str(value) else str(value)


@contacts_app.command("remove")
def contacts_remove(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The contact's email address.")],
    forget: Annotated[
        bool,
        typer.Option(
            "--forget",
            help="A data-deletion request: erase its history and inbound events too, and keep "
            "the address only as a hash so it is never imported or contacted again.",
        ),
    ] = False,
) -> None:
    """Delete one contact; a suppressed (unsubscribed, bounced) address stays suppressed.

    --forget erases everything about it for a data-deletion request.
    """
    with reported():
        from outreach.services.removal import remove_contact

        removed = remove_contact(context_of(ctx).store(), email, now=utc_now(), forget=forget)
    messages = f"{removed.messages} message{'' if removed.messages == 1 else 's'}"
    if removed.forgotten:
        events = f"{removed.inbound_events} inbound event"
        events += "" if removed.inbound_events == 1 else "s"
        out.print(
            f"erased {removed.email}: the contact, its history, {messages} and {events}; "
            "the address is kept only as a hash, so it is never imported or contacted again",
            markup=False,
        )
        return
    kept = "; it stays suppressed" if removed.suppressed else ""
    out.print(f"removed {removed.email} with its history and {messages}{kept}", markup=False)


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
