"""Opening the database: engine settings per backend, and migrations to the newest schema.

Alembic (with Mako and Pygments behind it, some 12 MiB) is imported only when a migration is
due: a database already at head is recognised by reading ``alembic_version`` with SQLAlchemy
and comparing it with the head read from the migration files' ``revision`` lines.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from outreach.errors import StoreError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"  # Alembic's default, which env.py keeps
T = TypeVar("T")
# The module-level assignments Alembic itself reads from each migration file.
_REVISION_LINE = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.MULTILINE)
_QUOTED = re.compile(r"""["']([^"']+)["']""")


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
        try:
            with self.engine.connect() as connection:
                stored = _stored_revisions(connection)
        except SQLAlchemyError as exc:
            raise self._unopened(exc) from exc
        head = _known_head()
        if head is not None and stored == (head,):
            return head, head  # the usual start: nothing to migrate, Alembic stays unloaded
        return self._migrate()

    def _migrate(self) -> tuple[str | None, str]:
        from alembic import command  # noqa: PLC0415  (only when a migration is due)
        from alembic.runtime.migration import MigrationContext  # noqa: PLC0415
        from alembic.util import CommandError  # noqa: PLC0415

        before: str | None = None
        try:
            with self.engine.begin() as connection:
                before = MigrationContext.configure(connection).get_current_revision()
                config = _alembic_config()
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except SQLAlchemyError as exc:
            raise self._unopened(exc) from exc
        except CommandError as exc:
            # Typically a database written by a newer outreach: never guess at its schema.
            raise StoreError(
                f"the database {self.label} has schema {before!r}, which this version of "
                f"outreach does not know (newest known: {self.head_revision()}); "
                f"upgrade outreach ({exc})"
            ) from exc
        return before, self.head_revision()

    def _unopened(self, exc: SQLAlchemyError) -> StoreError:
        cause = getattr(exc, "orig", None) or exc
        return StoreError(f"can't open the database {self.label}: {cause}")

    def current_revision(self) -> str | None:
        """The schema revision the database is at (None for an empty database)."""
        with self.engine.connect() as connection:
            stored = _stored_revisions(connection)
            if len(stored) <= 1:
                return stored[0] if stored else None
            from alembic.runtime.migration import MigrationContext  # noqa: PLC0415

            # Several rows are branches, which outreach never makes: Alembic's error says so.
            return MigrationContext.configure(connection).get_current_revision()

    @staticmethod
    def head_revision() -> str:
        """The newest schema revision this version of outreach knows."""
        head = _known_head()
        if head is not None:
            return head
        from alembic.script import ScriptDirectory  # noqa: PLC0415

        found = ScriptDirectory.from_config(_alembic_config()).get_current_head()
        assert found is not None
        return found

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


def _stored_revisions(connection: Connection) -> tuple[str, ...]:
    """The revisions in ``alembic_version``, read where Alembic reads them (the connection's
    default schema); none for an empty database."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return ()
    query = text(f"SELECT version_num FROM {VERSION_TABLE}")  # noqa: S608  (a constant name)
    return tuple(connection.scalars(query))


@cache
def _known_head() -> str | None:
    """The head revision of the migration files, read from their ``revision`` and
    ``down_revision`` lines without importing Alembic; None when they don't make one plain
    line of history (then Alembic decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        lines = dict(_REVISION_LINE.findall(path.read_text(encoding="utf-8")))
        if "revision" not in lines:
            continue  # __init__.py
        revision = _QUOTED.fullmatch(lines["revision"])
        if revision is None or "down_revision" not in lines:
            return None
        revisions.add(revision.group(1))
        parents.update(_QUOTED.findall(lines["down_revision"]))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _alembic_config() -> AlembicConfig:
    from alembic.config import Config as AlembicConfig  # noqa: PLC0415

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
