"""Log lines: one per event, with journald's ``<N>`` priority prefix when under systemd, and no
secret ever written (known secret values are replaced before a line leaves the process)."""

from __future__ import annotations

import logging
import sys
import traceback

from outreach import redact
from outreach.runtime.systemd import journal_attached

# sd-daemon(3) priorities, which journald reads from a "<N>" prefix on each line.
PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}
LEVELS = ("debug", "info", "warning", "error")
REDACTED = redact.MASK


class OneLineFormatter(logging.Formatter):
    """``<N>name: message`` for the journal (it adds the time), else time, level, name, message.

    An exception's traceback is folded into the same line, so one event is one journal entry.
    """

    def __init__(self, *, journal: bool) -> None:
        super().__init__()
        self.journal = journal
        self.secrets: set[str] = set()

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info:
            text += " | " + " | ".join(
                line.rstrip()
                for chunk in traceback.format_exception(*record.exc_info)
                for line in chunk.splitlines()
            )
        text = " | ".join(part for part in text.splitlines() if part.strip()) or text
        text = redact.masked(text, self.secrets)
        if self.journal:
            return f"<{PRIORITY.get(record.levelno, 6)}>{record.name}: {text}"
        when = self.formatTime(record, "%Y-%m-%d %H:%M:%S")
        return f"{when} {record.levelname} {record.name}: {text}"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(level: str) -> logging.Handler:
    """Send every log record at ``level`` or above to stderr, one line each."""
    handler = _StderrHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(journal=journal_attached(sys.stderr)))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h.formatter, OneLineFormatter)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # APScheduler reports every run of every job at INFO, Alembic each migration check:
    # useful only when debugging.
    for chatty in ("apscheduler", "alembic"):
        logging.getLogger(chatty).setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    return handler
