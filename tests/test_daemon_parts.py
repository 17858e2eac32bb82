"""The daemon's small parts: log lines, sd_notify, the instance lock, the digest's text."""

from __future__ import annotations

import io
import logging
import os
import socket
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from outreach.errors import AlreadyRunning, ConfigError
from outreach.runtime.clock import Clock
from outreach.runtime.logs import OneLineFormatter
from outreach.runtime.systemd import Notifier, journal_attached, watchdog_interval
from outreach.store.instance import DispatchLock, InstanceLock, daemon_running

ZONE = ZoneInfo("America/New_York")


def _record(level: int, message: str, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad\nthing")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("outreach.x", level, __file__, 1, message, (), exc_info)


class TestLogLines:
    @pytest.mark.parametrize(
        ("level", "prefix"),
        [
            (logging.DEBUG, "<7>"),
            (logging.INFO, "<6>"),
            (logging.WARNING, "<4>"),
            (logging.ERROR, "<3>"),
            (logging.CRITICAL, "<2>"),
        ],
    )
    def test_journal_lines_carry_the_syslog_priority(self, level: int, prefix: str) -> None:
        line = OneLineFormatter(journal=True).format(_record(level, "hello"))
        assert line == f"{prefix}outreach.x: hello"

    def test_a_traceback_stays_on_one_line(self) -> None:
        line = OneLineFormatter(journal=True).format(_record(logging.ERROR, "failed", exc=True))
        assert "\n" not in line
        assert line.startswith("<3>outreach.x: failed | Traceback")
        assert "ValueError: bad | thing" in line

    def test_known_secrets_are_masked_everywhere(self) -> None:
        formatter = OneLineFormatter(journal=False)
        formatter.secrets.add("s3cret-pw")
        line = formatter.format(_record(logging.WARNING, "login with s3cret-pw failed"))
        assert "s3cret-pw" not in line
        assert "login with ******** failed" in line

    def test_without_the_journal_lines_have_time_and_level(self) -> None:
        line = OneLineFormatter(journal=False).format(_record(logging.WARNING, "hi"))
        assert line.endswith(" WARNING outreach.x: hi")

    def test_journal_stream_must_name_this_very_stream(self, tmp_path: Path) -> None:
        with (tmp_path / "a").open("w") as a, (tmp_path / "b").open("w") as b:
            status = os.fstat(a.fileno())
            os.environ["JOURNAL_STREAM"] = f"{status.st_dev}:{status.st_ino}"
            try:
                assert journal_attached(a)
                assert not journal_attached(b)
                assert not journal_attached(io.StringIO())
            finally:
                del os.environ["JOURNAL_STREAM"]
        assert not journal_attached(sys.stderr)


class TestNotify:
    def test_messages_arrive_as_systemd_reads_them(self) -> None:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        directory = tempfile.mkdtemp(prefix="n")  # short: Unix socket paths are limited
        path = os.path.join(directory, "s")
        server.bind(path)
        try:
            notifier = Notifier(path)
            notifier.ready("watching INBOX;\n3 due today")
            notifier.watchdog()
            notifier.stopping()
            assert server.recv(1000) == b"READY=1\nSTATUS=watching INBOX; 3 due today"
            assert server.recv(1000) == b"WATCHDOG=1"
            assert server.recv(1000) == b"STOPPING=1\nSTATUS=stopping"
            notifier.close()
        finally:
            server.close()
            os.unlink(path)
            os.rmdir(directory)

    def test_without_systemd_nothing_is_sent_and_nothing_fails(self) -> None:
        notifier = Notifier("")
        assert not notifier.enabled
        notifier.ready("x")
        notifier.watchdog()
        notifier.close()

    def test_a_vanished_manager_is_not_fatal(self) -> None:
        notifier = Notifier("/nonexistent/notify")
        notifier.ready("x")
        notifier.close()

    def test_watchdog_interval_is_half_the_timeout_and_only_for_this_pid(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("WATCHDOG_USEC", "30000000")
        assert watchdog_interval() == 15.0
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
        assert watchdog_interval() is None
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
        assert watchdog_interval() == 15.0
        monkeypatch.setenv("WATCHDOG_USEC", "0")
        assert watchdog_interval() is None


class TestInstanceLock:
    def test_one_holder_per_database_on_each_backend(self, database_url: str) -> None:
        first = InstanceLock(database_url)
        first.acquire()
        try:
            assert daemon_running(database_url)
            with pytest.raises(AlreadyRunning, match="already running"):
                InstanceLock(database_url).acquire()
        finally:
            first.release()
        assert not daemon_running(database_url)
        again = InstanceLock(database_url)
        again.acquire()
        again.release()

    def test_the_dispatch_lock_is_not_reentrant(self, database_url: str) -> None:
        """A second pass through the same object must not get in (its release would free the
        first pass's lock)."""
        lock = DispatchLock(database_url)
        assert lock.try_acquire()
        try:
            assert not lock.try_acquire()
            assert not DispatchLock(database_url).try_acquire()
        finally:
            lock.release()
        assert DispatchLock(database_url).try_acquire()

    @pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file away")
    def test_a_lock_file_root_creates_belongs_to_the_databases_owner(self, tmp_path: Path) -> None:
        """An operator's send-due as root must not leave a lock file the service's own user
        can't open (every pass of the daemon would fail)."""
        database = tmp_path / "outreach.sqlite3"
        database.touch()
        os.chown(database, 65534, 65534)  # nobody
        lock = DispatchLock(f"sqlite:///{database}")
        assert lock.try_acquire()
        lock.release()
        assert (lock.path.stat().st_uid, lock.path.stat().st_gid) == (65534, 65534)


class TestClock:
    def test_outreach_now_starts_the_clock_there_in_the_practice_zone(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("OUTREACH_NOW", "2027-03-01T09:30")
        now = Clock.from_environment(ZONE).now()
        assert datetime(2027, 3, 1, 9, 30, tzinfo=ZONE) <= now
        assert (now - datetime(2027, 3, 1, 9, 30, tzinfo=ZONE)).total_seconds() < 5

    def test_a_bad_outreach_now_is_named(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("OUTREACH_NOW", "next tuesday")
        with pytest.raises(ConfigError, match="OUTREACH_NOW: 'next tuesday'"):
            Clock.from_environment(ZONE)
