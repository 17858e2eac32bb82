"""What every command shares: the Typer apps, the consoles, the config and store context, and
turning outreach's errors into plain lines and exit codes."""

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
from rich.console import Console

from outreach import __version__
from outreach.errors import (
    ConfigError,
    ContactNotFound,
    ImportProblems,
    OutreachError,
)
from outreach.runtime.logs import LEVELS, configure_logging

if TYPE_CHECKING:
    from outreach.config import Settings
    from outreach.mail.abc import OpenSmtp
    from outreach.runtime.parts import Parts
    from outreach.services.dispatch import Dispatcher
    from outreach.store.database import Store

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
auth_app = typer.Typer(
    help="Sign in to the mailbox with OAuth2 (Microsoft 365, Google).", no_args_is_help=True
)
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
