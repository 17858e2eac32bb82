"""One daemon per database: a lock held for the daemon's whole life.

On SQLite the lock is ``flock(2)`` on ``<database>.lock`` beside the file; on PostgreSQL a
session advisory lock on a connection kept open. Both vanish with the process, even after a
SIGKILL, so a crash never leaves a stale lock behind. (Several instances sharing one
PostgreSQL database will need leased claims first; see DESIGN.md. Until then, one.)
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import NullPool

from outreach.errors import AlreadyRunning

# "outreach" as a number: the key of the PostgreSQL advisory lock.
ADVISORY_KEY = int.from_bytes(b"outreach", "big") & 0x7FFF_FFFF_FFFF_FFFF


class InstanceLock:
    """Held while a daemon runs on a database; ``acquire`` fails if another holds it."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._file: int | None = None
        self._connection: Connection | None = None

    def acquire(self) -> None:
        url = make_url(self.database_url)
        if url.get_backend_name() == "sqlite":
            path = lock_path(self.database_url)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise AlreadyRunning(url.database or "", _holder(path)) from None
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self._file = fd
            return
        engine = create_engine(self.database_url, poolclass=NullPool)
        connection = engine.connect()
        got = connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY})
        if not got.scalar():
            connection.close()
            raise AlreadyRunning(url.render_as_string(hide_password=True), None)
        connection.commit()
        self._connection = connection

    def release(self) -> None:
        if self._file is not None:
            os.close(self._file)  # closing the descriptor drops the flock
            self._file = None
        if self._connection is not None:
            self._connection.close()  # ending the session drops the advisory lock
            self._connection = None


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


def _holder(path: Path) -> int | None:
    try:
        text_ = path.read_text().strip()
    except OSError:
        return None
    return int(text_) if text_.isdigit() else None
