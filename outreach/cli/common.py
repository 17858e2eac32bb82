"""What every command shares: the Typer apps, the consoles, the config and store context, and
turning outreach's errors into plain lines and exit codes.

Imports stay light here and in every command module: ``outreach --help`` builds every command,
and ``outreach run`` starts from here too. Rich, the services and the store are imported by the
command that uses them, when it runs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from outreach import __version__
from outreach.errors import (
    ConfigError,
    ContactNotFound,
    ImportProblems,
    OutreachError,
)

if TYPE_CHECKING:
    from rich.console import Capture, Console

    from outreach.config import Settings
    from outreach.mail.abc import OpenSmtp
    from outreach.runtime.parts import Parts
    from outreach.services.dispatch import Dispatcher
    from outreach.store.database import Store

MAX_PROBLEMS_SHOWN = 200
PROGRESS_MIN_BYTES = 200_000


class LazyConsole:
    """A Rich console made at its first use: importing Rich costs more start-up time than the
    rest of ``outreach --help``, and ``outreach run`` prints nothing with it."""

    def __init__(self, *, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr, highlight=False, soft_wrap=True)
        return self._console

    def print(self, *objects: Any, **options: Any) -> None:
        self.console.print(*objects, **options)

    @property
    def is_terminal(self) -> bool:
        return self.console.is_terminal

    def capture(self) -> Capture:
        return self.console.capture()


out = LazyConsole()
err = LazyConsole(stderr=True)


def command_group(help_text: str, **options: Any) -> typer.Typer:
    """A Typer app with plain-text help. Rich markup would swallow the TOML table names the
    help quotes ("[sending] hold_new"), and Rich's help formatter alone takes longer to
    import than the rest of ``outreach --help`` takes to run."""
    return typer.Typer(help=help_text, no_args_is_help=True, rich_markup_mode=None, **options)


app = command_group(
    "Referral-source outreach for a psychotherapy practice: contacts, sequences, replies.",
    name="outreach",
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = command_group("Check the configuration file.")
db_app = command_group("Manage the database schema.")
contacts_app = command_group("Import, list, show and export referral sources.")
stage_app = command_group("Move contacts between pipeline stages by hand.")
templates_app = command_group("Check message templates.")
outbox_app = command_group("The delivery ledger: list sends, resolve interrupted ones.")
inbox_app = command_group("Read the practice's inbox for replies, bounces and opt-outs.")
sending_app = command_group("Control sending (resume after a policy pause).")
referrals_app = command_group("Record referrals received from sources.")
auth_app = command_group("Sign in to the mailbox with OAuth2 (Microsoft 365, Google).")
app.add_typer(config_app, name="config")
app.add_typer(auth_app, name="auth")
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
    _parts: Parts | None = None

    def settings(self) -> Settings:
        """The configuration, with the files and folders it names checked too."""
        if self._settings is None:
            from outreach.config import load_checked

            self._settings = load_checked(self.config_path)
        return self._settings

    def store(self) -> Store:
        """The store, migrated to the newest schema (every command does this at start)."""
        from outreach.store.database import open_store

        store = open_store(self.settings().database_url)
        self._stores.append(store)
        return store

    def parts(self) -> Parts:
        """The services over the store, wired to the configured mail servers."""
        if self._parts is None:
            from outreach.runtime.parts import build_parts

            self._parts = build_parts(self.settings(), self.store())
        return self._parts

    def smtp(self) -> OpenSmtp:
        """SMTP sessions to the configured server (the notices a rule may send), without
        building the dispatcher and the rest of ``parts``."""
        if self._parts is not None:
            return self._parts.smtp
        from outreach.mail.connections import open_smtp

        return open_smtp(self.settings())

    def dispatcher(self) -> Dispatcher:
        """The dispatcher over the store and the configured templates."""
        return self.parts().dispatcher

    def close(self) -> None:
        for store in self._stores:
            store.close()


def context_of(ctx: typer.Context) -> Context:
    state = ctx.find_root().obj
    assert isinstance(state, Context)
    return state


def _version(value: bool) -> None:
    if value:
        typer.echo(f"outreach {__version__}")  # plain: one line needs no Rich
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
        str | None,
        typer.Option(
            "--log-level",
            help="debug, info, warning or error (default: info for run, else warning).",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Referral-source outreach for a psychotherapy practice."""
    from outreach.runtime.logs import LEVELS, configure_logging

    if log_level is None:
        log_level = "info" if ctx.invoked_subcommand == "run" else "warning"
    if log_level.lower() not in LEVELS:
        raise typer.BadParameter("must be debug, info, warning or error", param_hint="--log-level")
    configure_logging(log_level.lower())
    state = Context(config_path=config)
    ctx.obj = state
    ctx.call_on_close(state.close)


def _fail(lines: list[str], code: int = 2) -> NoReturn:
    for line in lines:
        err.print(line, markup=False)
    raise typer.Exit(code)


@contextmanager
def reported() -> Iterator[None]:
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


def utc_now() -> datetime:
    return datetime.now(UTC)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
