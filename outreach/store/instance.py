"""Locks on a database that vanish with their process: one daemon per database, and one
dispatch pass at a time (the daemon's and any ``send-due`` share the ledger).

On SQLite a lock is ``flock(2)`` on a file beside the database; on PostgreSQL a session
advisory lock on a connection kept open. Both vanish with the process, even after a SIGKILL,
so a crash never leaves a stale lock behind. A PostgreSQL restart also ends the session, and
with it the lock: ``InstanceLock.still_held`` notices and takes it back. (Several instances
sharing one PostgreSQL database will need leased claims first; see DESIGN.md. Until then,
one.)
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from outreach.errors import AlreadyRunning, StoreError
from outreach.store.database import database_problem

# "outreach" as a number: the key of the PostgreSQL advisory lock; a dispatch pass uses the
# next one.
ADVISORY_KEY = int.from_bytes(b"outreach", "big") & 0x7FFF_FFFF_FFFF_FFFF
DISPATCH_KEY = ADVISORY_KEY + 1


class DatabaseLock:
    """A lock held by this process on a database; ``try_acquire`` never waits."""

    def __init__(self, database_url: str, *, suffix: str, key: int) -> None:
        self.database_url = database_url
        self.sqlite = make_url(database_url).get_backend_name() == "sqlite"
        self.database_file = Path(make_url(database_url).database or "")
        self.path = Path(f"{self.database_file}{suffix}")
        self.key = key
        self._file: int | None = None
        self._connection: Connection | None = None
        self._backend_pid: int | None = None  # the PostgreSQL session that took the lock

    @property
    def held(self) -> bool:
        return self._file is not None or self._connection is not None

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it, this object included (it is not re-entrant: a
        second holder's release would free the first's); True if it is now held here."""
        if self.held:
            return False
        if self.sqlite:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            _owned_like(fd, self.database_file)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self._file = fd
            return True
        connection = create_engine(self.database_url, poolclass=NullPool).connect()
        try:
            got = connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key})
            if not got.scalar():
                connection.close()
                return False
            self._backend_pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
            connection.commit()
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return True

    def session_alive(self) -> bool:
        """Whether the PostgreSQL session holding the lock is still there (a server restart
        ends it, and the lock with it). Always true for a file lock held open."""
        if self._connection is None:
            return self._file is not None
        try:
            self._connection.execute(text("SELECT 1"))
            self._connection.commit()
        except DBAPIError:
            self._drop_connection()
            return False
        return True

    def holder(self) -> int | None:
        """The pid written in a SQLite lock file (PostgreSQL doesn't say)."""
        try:
            text_ = self.path.read_text().strip()
        except OSError:
            return None
        return int(text_) if text_.isdigit() else None

    def release(self) -> None:
        if self._file is not None:
            os.close(self._file)  # closing the descriptor drops the flock
            self._file = None
        if self._connection is not None:
            self._drop_connection()  # ending the session drops the advisory lock

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except DBAPIError:
                connection.invalidate()


class InstanceLock(DatabaseLock):
    """Held while a daemon runs on a database; ``acquire`` fails if another holds it."""

    def __init__(self, database_url: str) -> None:
        super().__init__(database_url, suffix=".lock", key=ADVISORY_KEY)

    def acquire(self) -> None:
        if not self.try_acquire():
            raise AlreadyRunning(self._label(), self.holder() if self.sqlite else None)

    def still_held(self) -> bool:
        """Check the lock is still ours, taking it back after a PostgreSQL restart.

        True: held. False: another daemon took it meanwhile (this one must stop). Raises
        StoreError while the database can't be reached (nobody can take it then either)."""
        if self.session_alive():
            return True
        try:
            return self.try_acquire() or (self._end_own_session() and self.try_acquire())
        except DBAPIError as exc:
            reason = database_problem(exc)
            message = f"can't reach the database to retake the daemon lock: {reason}"
            raise StoreError(message) from exc

    def _end_own_session(self) -> bool:
        """When only our side of the lock's connection died (a NAT or firewall forgot it), the
        server still runs our old session, holding the lock: end it. True if it was ours."""
        old, self._backend_pid = self._backend_pid, None
        if old is None:
            return False
        connection = create_engine(self.database_url, poolclass=NullPool).connect()
        try:
            held = connection.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = :pid "
                    "AND granted"
                ),
                {"pid": old},
            ).scalar_one()
            if not held:
                return False
            ended = connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": old})
            return bool(ended.scalar_one())
        finally:
            connection.close()

    def _label(self) -> str:
        url = make_url(self.database_url)
        return url.database or "" if self.sqlite else url.render_as_string(hide_password=True)


class DispatchLock(DatabaseLock):
    """Held for one dispatch pass, so a second pass (the daemon's and a ``send-due``, or two
    ``send-due``) never reconciles a row the first is sending as interrupted."""

    def __init__(self, database_url: str) -> None:
        super().__init__(database_url, suffix=".dispatch.lock", key=DISPATCH_KEY)


def _owned_like(fd: int, database: Path) -> None:
    """Run as root (an operator's ``send-due``), give a lock file to the database file's
    owner, as SQLite does for its -wal and -shm: else the service's own user could never open
    it again."""
    if os.geteuid() != 0:
        return
    try:
        owner = database.stat()
    except OSError:
        return
    os.fchown(fd, owner.st_uid, owner.st_gid)


def daemon_running(database_url: str) -> bool:
    """Whether a daemon holds the lock on this database right now (never creating the lock
    file, which would then belong to whoever asked rather than to the service's user)."""
    if make_url(database_url).get_backend_name() == "sqlite":
        try:
            fd = os.open(lock_path(database_url), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False
    probe = InstanceLock(database_url)
    try:
        probe.acquire()
    except AlreadyRunning:
        return True
    probe.release()
    return False


def lock_path(database_url: str) -> Path:
    return Path(f"{make_url(database_url).database}.lock")
