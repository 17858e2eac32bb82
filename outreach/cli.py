"""The ``outreach`` command line: Typer commands over the service functions, no logic of its own."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from outreach import __version__, contacts, mailcheck, outbound, reporting, workflow
from outreach.classify import classify
from outreach.config import Settings, check_config_files, load_config
from outreach.dispatch import Dispatcher, DispatchReport
from outreach.errors import (
    ConfigError,
    ContactNotFound,
    ImportProblems,
    MailServerUnusable,
    OutreachError,
)
from outreach.inbound import InboundProcessor
from outreach.matching import match_message
from outreach.report_html import render_html
from outreach.store import Store, open_store
from outreach.templates import TemplateSet
from outreach.watcher import SyncReport, sync_once, watch

MAX_PROBLEMS_SHOWN = 200
PROGRESS_MIN_BYTES = 200_000

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

app = typer.Typer(
    name="outreach",
    help="Referral-source outreach for a psychotherapy practice: contacts, sequences, replies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Check the configuration file.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the database schema.", no_args_is_help=True)
contacts_app = typer.Typer(
    help="Import, list, show and export referral sources.", no_args_is_help=True
)
stage_app = typer.Typer(help="Move contacts between pipeline stages by hand.", no_args_is_help=True)
templates_app = typer.Typer(help="Check message templates.", no_args_is_help=True)
outbox_app = typer.Typer(
    help="The delivery ledger: list sends, resolve interrupted ones.", no_args_is_help=True
)
inbox_app = typer.Typer(
    help="Read the practice's inbox for replies, bounces and opt-outs.", no_args_is_help=True
)
sending_app = typer.Typer(
    help="Control sending (resume after a policy pause).", no_args_is_help=True
)
referrals_app = typer.Typer(help="Record referrals received from sources.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
app.add_typer(contacts_app, name="contacts")
app.add_typer(stage_app, name="stage")
app.add_typer(referrals_app, name="referrals")
app.add_typer(templates_app, name="templates")
app.add_typer(outbox_app, name="outbox")
app.add_typer(sending_app, name="sending")
app.add_typer(inbox_app, name="inbox")


@dataclass
class Context:
    """What every command shares: where the config is, loaded at first use."""

    config_path: Path | None
    _settings: Settings | None = None
    _stores: list[Store] = field(default_factory=list)

    def settings(self) -> Settings:
        """The configuration, with the files and folders it names checked too."""
        if self._settings is None:
            settings = load_config(self.config_path)
            problems = check_config_files(settings)
            if problems:
                raise ConfigError(problems)
            self._settings = settings
        return self._settings

    def store(self) -> Store:
        """The store, migrated to the newest schema (every command does this at start)."""
        store = open_store(self.settings().database_url)
        self._stores.append(store)
        return store

    def dispatcher(self) -> Dispatcher:
        """The dispatcher over the store and the configured templates."""
        settings = self.settings()
        return Dispatcher(self.store(), settings, TemplateSet(settings.templates.dir))

    def close(self) -> None:
        for store in self._stores:
            store.close()


def _context(ctx: typer.Context) -> Context:
    state = ctx.find_root().obj
    assert isinstance(state, Context)
    return state


def _version(value: bool) -> None:
    if value:
        out.print(f"outreach {__version__}")
        raise typer.Exit


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Config file. Default: $OUTREACH_CONFIG, else ./config/outreach.toml, "
            "else /etc/outreach/outreach.toml.",
            dir_okay=False,
        ),
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "warning",
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Referral-source outreach for a psychotherapy practice."""
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        raise typer.BadParameter("must be debug, info, warning or error", param_hint="--log-level")
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    state = Context(config_path=config)
    ctx.obj = state
    ctx.call_on_close(state.close)


def _fail(lines: list[str], code: int = 2) -> NoReturn:
    for line in lines:
        err.print(line, markup=False)
    raise typer.Exit(code)


@contextmanager
def _reported() -> Iterator[None]:
    """Turn outreach's errors into plain lines on stderr and an exit code, never a traceback."""
    try:
        yield
    except ConfigError as exc:
        _fail(exc.problems)
    except ImportProblems as exc:
        shown = exc.problems[:MAX_PROBLEMS_SHOWN]
        more = len(exc.problems) - len(shown)
        _fail([*shown, *([f"... and {more} more problems"] if more else []), str(exc)])
    except ContactNotFound as exc:
        _fail([f"error: {exc}"], code=1)
    except OutreachError as exc:
        _fail([f"error: {exc}"])


def _now() -> datetime:
    return datetime.now(UTC)


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


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
    with _reported():
        settings = _context(ctx).settings()
        logins, problems = [], []
        if connect:
            checks: list[Callable[[], str]] = [
                lambda: mailcheck.check_smtp(settings.smtp),
                lambda: mailcheck.check_imap(settings.imap),
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
    out.print(
        f"  smtp:     {settings.smtp.host}:{settings.smtp.effective_port} "
        f"({settings.smtp.security}); password {_secret_state(settings.smtp.password)}",
        markup=False,
    )
    out.print(
        f"  imap:     {settings.imap.host}:{settings.imap.effective_port} "
        f"({settings.imap.security}); password {_secret_state(settings.imap.password)}; "
        f"watching {', '.join(settings.imap.folders)}",
        markup=False,
    )
    out.print(f"  storage:  {settings.database_label}", markup=False)
    out.print(
        f"  segments: {len(settings.segments)} ({', '.join(settings.segments)}), "
        f"{steps} sequence steps",
        markup=False,
    )
    for line in logins:
        out.print(f"  ok: {line}", markup=False)


def _secret_state(secret: object) -> str:
    return "set" if secret is not None else "not set"


# --- db -------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Migrate the database to the newest schema (every command also does this at start)."""
    with _reported():
        store = Store(_context(ctx).settings().database_url)
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
    with _reported():
        state = _context(ctx)
        settings = state.settings()
        if segment is not None and segment not in settings.segments:
            raise ConfigError(
                [
                    f"--segment: unknown segment {segment!r} (configured: "
                    f"{', '.join(settings.segments)})"
                ]
            )
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
                now=_now(),
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
    with _reported():
        state = _context(ctx)
        settings = state.settings()
        if stage is not None:
            settings.the_pipeline.require(stage)
        if segment is not None and segment not in settings.segments:
            raise ConfigError(
                [
                    f"--segment: unknown segment {segment!r} (configured: "
                    f"{', '.join(settings.segments)})"
                ]
            )
        found = contacts.list_contacts(state.store(), segment=segment, stage=stage)
    if as_json:
        _print_json([c.to_json() for c in found])
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
    with _reported():
        history = contacts.show_contact(_context(ctx).store(), email)
    if as_json:
        _print_json(history.to_json())
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
    with _reported():
        store = _context(ctx).store()
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
    with _reported():
        state = _context(ctx)
        change, ruled = workflow.set_stage_by_hand(
            state.store(), state.settings(), email, stage, now=_now(), note=note
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
    received: date = on.date() if on else _now().date()
    with _reported():
        state = _context(ctx)
        change, ruled = workflow.record_referral(
            state.store(), state.settings(), email, received_on=received, now=_now(), note=note
        )
    moved = f"; {change.from_stage} -> {change.to_stage}" if change else ""
    out.print(f"{email}: referral on {received} recorded{moved}{ruled}", markup=False)


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
        return _now()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            [f"--now: {value!r} is not an ISO 8601 time such as 2026-03-02T09:30"]
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(settings.practice.timezone))
    return parsed.astimezone(UTC)


def _require_templates(state: Context) -> Dispatcher:
    dispatcher = state.dispatcher()
    failures = outbound.check_templates(dispatcher.store, dispatcher.settings, dispatcher.templates)
    if failures:
        raise ConfigError(
            [
                *map(str, failures),
                "templates check failed: nothing is sent until every template renders",
            ]
        )
    return dispatcher


@templates_app.command("check")
def templates_check(ctx: typer.Context) -> None:
    """Render every template of every sequence for every contact of its segment."""
    with _reported():
        state = _context(ctx)
        dispatcher = state.dispatcher()
        failures = outbound.check_templates(
            dispatcher.store, dispatcher.settings, dispatcher.templates
        )
        if failures:
            raise ConfigError([str(f) for f in failures])
    steps = sum(len(s.sequence) for s in dispatcher.settings.segments.values())
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
    with _reported():
        state = _context(ctx)
        data = outbound.preview(
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
    with _reported():
        state = _context(ctx)
        planned = outbound.plan(
            state.dispatcher(), now=_parse_now(now, state.settings()), days=days
        )
        zone = ZoneInfo(state.settings().practice.timezone)
    if as_json:
        _print_json([p.to_json() for p in planned])
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
    with _reported():
        state = _context(ctx)
        dispatcher = _require_templates(state)
        fixed_now = now is not None
        when = _parse_now(now, state.settings())
        while True:
            report = asyncio.run(dispatcher.run_pass(when, dry_run=dry_run))
            _print_report(report)
            if once or dry_run or fixed_now or not report.sent or report.paused or report.problems:
                break
            when = _now()
    if report.problems or report.paused:
        raise typer.Exit(1)


def _print_report(report: DispatchReport) -> None:
    verb = "would send" if report.dry_run else "sent"
    for line in report.sent:
        out.print(
            f"{verb} step {line.step} to {line.email}"
            + (f": {line.subject} {line.message_id}" if line.subject else ""),
            markup=False,
        )
    for line in report.reconciled:
        out.print(
            f"found in Sent after an interruption: step {line.step} to {line.email}", markup=False
        )
    for line in report.retrying:
        out.print(f"will retry step {line.step} to {line.email}: {line.detail}", markup=False)
    for line in report.failed:
        out.print(f"failed step {line.step} to {line.email}: {line.detail}", markup=False)
    for line in report.unknown:
        out.print(
            f"UNKNOWN whether step {line.step} reached {line.email} ({line.message_id}); "
            "check, then `outreach outbox resolve`",
            markup=False,
        )
    for email in report.finished:
        out.print(f"{email}: sequence finished without a reply -> no_response", markup=False)
    for problem in report.problems:
        err.print(problem, markup=False)
    if report.paused:
        err.print(f"sending is paused: {report.paused}", markup=False)
    if not (
        report.sent
        or report.reconciled
        or report.retrying
        or report.failed
        or report.unknown
        or report.finished
        or report.problems
        or report.paused
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
    with _reported():
        entries = outbound.list_outbox(_context(ctx).store(), state=state_filter)
    if as_json:
        _print_json([e.to_json() for e in entries])
        return
    table = Table(title=f"{len(entries)} outbox rows", title_justify="left")
    for column in ("id", "state", "email", "step", "subject", "updated (UTC)", "note"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(
            str(e.id),
            e.state,
            e.email,
            str(e.step),
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
    with _reported():
        if sent == resend:
            raise ConfigError(["give exactly one of --sent or --resend"])
        state = _context(ctx)
        result = outbound.resolve_outbox(state.dispatcher(), outbox_id, sent=sent, now=_now())
    out.print(f"outbox row {outbox_id}: {result}", markup=False)


@sending_app.command("resume")
def sending_resume(ctx: typer.Context) -> None:
    """Resume sending after a policy rejection (5.7.x) paused it, once the cause is fixed."""
    with _reported():
        reason = outbound.resume_sending(_context(ctx).store())
    out.print(
        "sending was not paused" if reason is None else f"sending resumed (was paused: {reason})",
        markup=False,
    )


# --- inbound --------------------------------------------------------------------------------


@inbox_app.command("sync")
def inbox_sync(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once", help="One catch-up pass, then exit (default: keep polling).")
    ] = False,
) -> None:
    """Read new messages in the watched folders (read-only) and apply their effects."""
    with _reported():
        state = _context(ctx)
        settings = state.settings()
        processor = InboundProcessor(state.store(), settings)
        if once:
            _print_sync(sync_once(settings.imap, processor), quiet=False)
            return
        stop = threading.Event()
        out.print(
            f"watching {', '.join(settings.imap.folders)} on {settings.imap.host} (Ctrl-C to stop)",
            markup=False,
        )
        try:
            watch(
                settings.imap,
                processor,
                stop=stop,
                poll_seconds=settings.inbound.poll_seconds,
                on_pass=lambda report: _print_sync(report, quiet=True),
            )
        except KeyboardInterrupt:
            stop.set()


def _print_sync(report: SyncReport, *, quiet: bool) -> None:
    for result in report.results:
        contact = f" from {result.contact}" if result.contact else ""
        out.print(f"{result.message_key}: {result.kind}{contact}: {result.effect}", markup=False)
    if not report.results and not quiet:
        out.print(f"no new messages in {', '.join(report.folders)}", markup=False)


@app.command("classify")
def classify_file(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A message file (.eml).", dir_okay=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show what a message is (reply, out-of-office, bounce, ...), whose it is, and why."""
    with _reported():
        try:
            raw = file.read_bytes()
        except OSError as exc:
            raise ConfigError([f"Can't read {file}: {exc.strerror}."]) from None
        state = _context(ctx)
        settings = state.settings()
        found = classify(raw)
        with state.store().session() as session:
            matched = match_message(session, found, settings.sender.from_address)
    result = {
        "kind": found.kind,
        "reasons": list(found.reasons),
        "contact": matched.email,
        "trusted": matched.trusted,
        "match": matched.how,
        "message_id": found.message_id,
        "refers_to": list(found.refers_to),
    }
    if found.kind == "bounce":
        result.update(
            recipient=found.recipient, status=found.status, bounce_class=found.bounce_class
        )
    if found.return_date:
        result["return_date"] = found.return_date.isoformat()
    if as_json:
        _print_json(result)
        return
    out.print(f"kind: {found.kind}", markup=False)
    out.print(
        f"contact: {matched.email or '(none)'} ({matched.how}"
        f"{'' if matched.trusted or not matched.email else '; flagged, not trusted'})",
        markup=False,
    )
    for reason in found.reasons:
        out.print(f"reason: {reason}", markup=False)
    for key in ("recipient", "status", "bounce_class", "return_date"):
        if result.get(key):
            out.print(f"{key}: {result[key]}", markup=False)


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
    with _reported():
        state = _context(ctx)
        settings = state.settings()
        now = _now()
        if since is not None and since.date() > now.date():
            raise ConfigError(
                [f"--since: {since.date()} is in the future; nothing has happened since then yet"]
            )
        if segment is not None and segment not in settings.segments:
            raise ConfigError(
                [
                    f"--segment: unknown segment {segment!r} (configured: "
                    f"{', '.join(settings.segments)})"
                ]
            )
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
        _print_json(built.to_json())
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


def main() -> None:
    """Console-script entry point."""
    app()
