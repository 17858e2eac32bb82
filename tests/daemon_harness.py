"""Running ``outreach run`` in a child process, with a stand-in for systemd's notify socket."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from outreach.config import load_config
from outreach.services.outbox import list_outbox
from outreach.store.database import open_store


class NotifyListener:
    """Records every sd_notify datagram, as systemd would receive them."""

    def __init__(self) -> None:
        # A short path: Unix socket paths are limited to 107 bytes.
        self.directory = Path(tempfile.mkdtemp(prefix="notify-"))
        self.path = self.directory / "s"
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(self.path))
        self.socket.settimeout(0.2)
        self.messages: list[str] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.socket.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append(data.decode())

    def assignments(self) -> list[str]:
        return [line for message in list(self.messages) for line in message.split("\n")]

    def count(self, assignment: str) -> int:
        return sum(1 for line in self.assignments() if line == assignment)

    def statuses(self) -> list[str]:
        return [a.removeprefix("STATUS=") for a in self.assignments() if a.startswith("STATUS=")]

    def close(self) -> None:
        self._closed.set()
        self.socket.close()
        self.path.unlink(missing_ok=True)
        self.directory.rmdir()


@dataclass
class DaemonProcess:
    """One ``outreach run`` child, its log file and its notify socket."""

    process: subprocess.Popen[bytes]
    log: Path
    notify: NotifyListener
    stopped: list[int] = field(default_factory=list)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until(self, what: str, predicate: object, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if callable(predicate) and predicate():
                return
            if self.process.poll() is not None:
                raise AssertionError(
                    f"daemon exited ({self.process.returncode}) before {what}:\n" + self.output()
                )
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n" + self.output())

    def wait_ready(self, timeout: float = 30.0) -> None:
        self.wait_until("READY=1", lambda: self.notify.count("READY=1") > 0, timeout)

    def send(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, float]:
        """Send ``signum``; the exit code and how long the exit took."""
        started = time.monotonic()
        self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"daemon still running {timeout} s after {signum}") from None
        return code, time.monotonic() - started

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.notify.close()


def start_daemon(
    config: Path, log: Path, env: dict[str, str] | None = None, *args: str, journal: bool = False
) -> DaemonProcess:
    """Start ``outreach run``; with ``journal``, its output file poses as journald's stream."""
    notify = NotifyListener()
    environment = {**os.environ, "NOTIFY_SOCKET": str(notify.path), **(env or {})}
    command = [sys.executable, "-m", "outreach", "--config", str(config), *args, "run"]
    with log.open("ab") as out:
        if journal:
            status = os.fstat(out.fileno())
            environment["JOURNAL_STREAM"] = f"{status.st_dev}:{status.st_ino}"
        process = subprocess.Popen(command, env=environment, stdout=out, stderr=subprocess.STDOUT)
    return DaemonProcess(process, log, notify)


def write_contacts(path: Path, count: int, segment: str = "psychiatrist") -> list[str]:
    emails = [f"p{i}@org{i}.example.com" for i in range(count)]
    rows = "".join(f"{e},P{i},Q{i},{segment}\n" for i, e in enumerate(emails))
    path.write_text("email,first_name,last_name,segment\n" + rows)
    return emails


def ledger_states(config: Path) -> dict[tuple[str, int], str]:
    """(email, 1-based step) -> outbox state."""
    store = open_store(load_config(config).database_url)
    try:
        return {(e.email, e.step): e.state for e in list_outbox(store)}
    finally:
        store.close()


def received_counts(envelopes: list[object]) -> Counter[str]:
    return Counter(getattr(e, "rcpt_tos")[0] for e in envelopes)  # noqa: B009
