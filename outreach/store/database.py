"""Opening the database: engine settings per backend, and migrations to the newest schema."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from outreach.errors import StoreError

MIGRATIONS = Path(__file__).parent / "migrations"
T = TypeVar("T")


class Store:
    """The contact store: one engine, sessions on demand, migrations to head."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.label = make_url(url).render_as_string(hide_password=True)
        self.engine = _create_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose work commits at the end of the block, or rolls back on error."""
        with self._sessions.begin() as session:
            yield session

    def upgrade(self) -> tuple[str | None, str]:
        """Migrate to the newest schema; returns (revision before, revision after)."""
        before: str | None = None
        try:
            with self.engine.begin() as connection:
                before = MigrationContext.configure(connection).get_current_revision()
                config = _alembic_config()
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except SQLAlchemyError as exc:
            cause = getattr(exc, "orig", None) or exc
            raise StoreError(f"can't open the database {self.label}: {cause}") from exc
        except CommandError as exc:
            # Typically a database written by a newer outreach: never guess at its schema.
            raise StoreError(
                f"the database {self.label} has schema {before!r}, which this version of "
                f"outreach does not know (newest known: {self.head_revision()}); "
                f"upgrade outreach ({exc})"
            ) from exc
        return before, self.head_revision()

    def current_revision(self) -> str | None:
        """The schema revision the database is at (None for an empty database)."""
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    @staticmethod
    def head_revision() -> str:
        """The newest schema revision this version of outreach knows."""
        head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
        assert head is not None
        return head

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()


IN_CHUNK = 500  # values per SQL IN (...) list: far below SQLite's and PostgreSQL's limits


def in_chunks(values: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """``values`` in slices small enough for one ``IN (...)`` list each."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def open_store(url: str) -> Store:
    """A store at ``url``, migrated to the newest schema (as every command does at start)."""
    store = Store(url)
    try:
        store.upgrade()
    except BaseException:
        store.close()
        raise
    return store


def _alembic_config() -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, hide_parameters=True)
    if parsed.database and parsed.database != ":memory:":
        _create_private(Path(parsed.database))
    # hide_parameters: an error's text (logged) must not carry the values of the statement,
    # which may come from an inbound message (a Subject, a reason).
    engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets readers (status, reports) run beside the daemon's writes; foreign keys
        # are off by default in SQLite; synchronous=NORMAL is durable enough under WAL.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def _create_private(database: Path) -> None:
    """Create a missing SQLite file, and its folder, readable by their owner only: it holds
    personal data. SQLite gives its -wal, -shm and -journal files the database file's mode;
    an existing file keeps its own (``config check`` warns about a readable one)."""
    database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)  # an empty file is an empty database to SQLite


def _driver_error(exc: BaseException) -> DBAPIError | None:
    """The database driver's error behind ``exc`` (through StoreError's cause), if any."""
    error: BaseException | None = exc
    while error is not None and not isinstance(error, DBAPIError):
        error = error.__cause__
    return error


def database_unreachable(exc: BaseException) -> bool:
    """Whether a database error means the server is not there (yet): worth waiting for,
    unlike a wrong password or a missing database."""
    error = _driver_error(exc)
    text = str(error.orig if error is not None else "").lower()
    return any(
        sign in text
        for sign in (
            "connection refused",
            "could not connect",
            "timeout expired",
            "timed out",
            "no such file or directory",  # a Unix socket not there yet
            "the database system is starting up",
            "the database system is shutting down",
            "server closed the connection",
        )
    )


def database_problem(exc: BaseException) -> str:
    """The first line of what the database driver said (SQLAlchemy's own text adds the
    statement and a link), for a one-line log or status."""
    error = _driver_error(exc)
    text = str(error.orig if error is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
