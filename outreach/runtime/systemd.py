"""Talking to systemd: sd_notify datagrams (READY, STATUS, WATCHDOG, STOPPING) and the journal.

The protocol is a few lines over a Unix datagram socket (sd_notify(3)), so it is written here
rather than pulled in with libsystemd bindings. Every call is a no-op without systemd, so the
daemon runs the same in a terminal.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TextIO

log = logging.getLogger("outreach.systemd")  # pinned: journal lines show it


class Notifier:
    """Sends state changes to the service manager named by ``$NOTIFY_SOCKET``, if any."""

    def __init__(self, address: str | None = None) -> None:
        address = os.environ.get("NOTIFY_SOCKET", "") if address is None else address
        if address.startswith("@"):  # an abstract socket (sd_notify(3))
            address = "\0" + address[1:]
        self._address = address
        self._socket: socket.socket | None = None
        if address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, *assignments: str) -> None:
        """Send ``KEY=value`` lines; a manager that went away is logged, never fatal.

        Never blocks: the event loop calls this, and a datagram socket whose reader has
        fallen behind would otherwise stall the whole daemon; such a message is dropped."""
        if self._socket is None:
            return
        try:
            self._socket.sendto("\n".join(assignments).encode(), socket.MSG_DONTWAIT, self._address)
        except OSError as exc:  # BlockingIOError included: the reader is behind
            log.debug("sd_notify failed: %s", exc)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={_one_line(status)}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={_one_line(status)}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def reloading(self) -> None:
        self.send("RELOADING=1")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings: half of ``$WATCHDOG_USEC`` (sd_watchdog_enabled(3)),
    or None when systemd set no watchdog for this process."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2 / 1_000_000


def journal_attached(stream: TextIO) -> bool:
    """Whether ``stream`` is connected to journald: ``$JOURNAL_STREAM`` names its device and
    inode (systemd.exec(5)), so output redirected elsewhere is not mistaken for the journal."""
    value = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        status = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (status.st_dev, status.st_ino) == (int(device), int(inode))


def _one_line(text: str) -> str:
    return " ".join(text.split())
