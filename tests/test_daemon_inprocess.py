"""The daemon in this process, for what a child process can't show: a clock that jumps, and a
watcher that hangs (a fault no real server can be made to produce on cue)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from outreach.mail import imap_inbox as watcher
from outreach.runtime.clock import Clock
from outreach.runtime.daemon import Daemon
from outreach.runtime.systemd import Notifier
from tests.conftest import Run
from tests.daemon_harness import NotifyListener, ledger_states, received_counts, write_contacts
from tests.mailstack import SmtpServer

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

NEW_YORK = ZoneInfo("America/New_York")


class JumpingClock(Clock):
    """A clock the test sets; it runs on in real time between jumps."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)

    def jump(self, to: datetime) -> None:
        Clock.__init__(self, to)


async def _until(what: str, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _run(daemon: Daemon, scenario: Callable[[], Awaitable[None]]) -> int:
    async def main() -> int:
        task = asyncio.create_task(daemon.run())
        try:
            await scenario()
        finally:
            daemon.request_stop("test over")
        return await asyncio.wait_for(task, 15)

    return asyncio.run(main())


@pytest.fixture
def listener() -> Any:
    notify = NotifyListener()
    yield notify
    notify.close()


def test_clock_jumping_across_the_sending_window_sends_each_step_once_inside_it(
    outbound_config: Path,
    smtp_sink: SmtpServer,
    cli: Callable[..., Run],
    listener: NotifyListener,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """16:58 with a 3-an-hour cap: 3 go. Jump to 17:30, after the window: none. Jump to 09:00
    the next day: the other 3 go. Nothing twice, nothing outside the window."""
    for key, value in {
        "SENDING__START_TIME": "09:00",
        "SENDING__END_TIME": "17:00",
        "SENDING__MAX_PER_HOUR": "3",
        "DAEMON__DISPATCH_EVERY_SECONDS": "1",
        "DAEMON__DIGEST": "false",
    }.items():
        monkeypatch.setenv(f"OUTREACH_{key}", value)
    emails = write_contacts(tmp_path / "c.csv", 6)
    assert cli("contacts", "import", str(tmp_path / "c.csv")).exit_code == 0
    clock = JumpingClock(datetime(2026, 12, 1, 16, 58, tzinfo=NEW_YORK))
    daemon = Daemon(outbound_config, notifier=Notifier(str(listener.path)), clock=clock)

    async def scenario() -> None:
        await _until("3 sends", lambda: len(smtp_sink.received) == 3)
        clock.jump(datetime(2026, 12, 1, 17, 30, tzinfo=NEW_YORK))
        await asyncio.sleep(3)  # about three passes after the window closed
        assert len(smtp_sink.received) == 3
        clock.jump(datetime(2026, 12, 2, 9, 0, 30, tzinfo=NEW_YORK))
        await _until("the other 3", lambda: len(smtp_sink.received) == 6)
        await asyncio.sleep(2)

    assert _run(daemon, scenario) == 0
    assert sorted(received_counts(smtp_sink.received)) == sorted(emails)
    assert set(ledger_states(outbound_config).values()) == {"sent"}
    for envelope in smtp_sink.received:
        sent = datetime.strptime(envelope.message["Date"], "%a, %d %b %Y %H:%M:%S %z")
        local = sent.astimezone(NEW_YORK)
        assert local.hour in (9, 16), local  # inside the window, on either side of the jump


def test_watchdog_pings_stop_while_the_watcher_hangs_and_resume_after(
    outbound_config: Path,
    smtp_sink: SmtpServer,
    listener: NotifyListener,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A watcher stuck in one call (a hung IDLE) stops the pings, so systemd restarts us."""
    monkeypatch.setenv("WATCHDOG_USEC", "600000")  # a ping every 0.3 s
    monkeypatch.setenv("OUTREACH_DAEMON__DIGEST", "false")
    hang, hanging = threading.Event(), threading.Event()
    release = threading.Event()
    real_idle = watcher._idle

    def idle(*args: Any, **kwargs: Any) -> None:
        if hang.is_set():
            hanging.set()
            release.wait(30)  # stuck, calling no heartbeat
            return
        real_idle(*args, **kwargs)

    monkeypatch.setattr(watcher, "_idle", idle)
    daemon = Daemon(outbound_config, notifier=Notifier(str(listener.path)), stall_seconds=2.5)

    async def scenario() -> None:
        await _until("READY", lambda: listener.count("READY=1") == 1)
        await _until("pings", lambda: listener.count("WATCHDOG=1") >= 3)
        hang.set()
        daemon._watch_flag.restart_now()
        await _until("the hang", hanging.is_set)
        await asyncio.sleep(3)  # past stall_seconds
        stalled = listener.count("WATCHDOG=1")
        await asyncio.sleep(2)
        assert listener.count("WATCHDOG=1") == stalled, "pings went on while the watcher hung"
        hang.clear()
        release.set()
        await _until("pings again", lambda: listener.count("WATCHDOG=1") > stalled + 2)

    with caplog.at_level(logging.INFO):
        assert _run(daemon, scenario) == 0
    assert "the inbox watcher is stuck; withholding the watchdog ping" in caplog.text
