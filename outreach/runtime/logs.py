"""Log lines: one per event, with journald's ``<N>`` priority prefix when under systemd, and no
secret ever written (known secret values are replaced before a line leaves the process)."""

from __future__ import annotations

import ast
import logging
import re
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


# An IMAP quoted string (RFC 3501 4.3): the only form besides a literal in which a server
# sends message text (a body, an ENVELOPE's subject and addresses).
_QUOTED = re.compile(rb'"(?:[^"\\]|\\.)*"')
# imapclient's own line for a LITERAL+ (RFC 7888) literal: its size, then its first bytes.
_LITERAL_PLUS = re.compile(r"^> b['\"] \{(\d+)\+\}")


class ProtocolFilter(logging.Filter):
    """imapclient's debug lines with commands, response shapes and sizes, never message text.

    imapclient has imaplib log every line sent and read; at imaplib's debug level 5 (which
    mail/imap.py lowers to 4) it also logs each response with its literals, that is, whole
    messages. Those dumps are dropped, a literal's bytes are replaced by its size and a
    response line's quoted strings by ``"..."`` (RFC 3501 4.3: message text travels in no
    other form).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("imapclient"):
            return True
        try:
            text = record.getMessage()
        except (TypeError, ValueError):  # imaplib's print_log passes a time as an argument
            return False
        if text.lstrip().startswith(("untagged_responses", "untagged responses", "matched")):
            return False  # imaplib's dumps of whole responses, literals included
        if text.lstrip().startswith("(literal) >"):
            return False  # the bytes of a literal sent; the line before gives its size
        literal_plus = _LITERAL_PLUS.match(text)
        if literal_plus:
            text = f"> {{{literal_plus[1]}+}} (a literal of {literal_plus[1]} bytes)"
        elif text.startswith("< b"):
            text = "< " + _without_quoted(text[2:])
        record.msg, record.args = text, ()
        return True


def _without_quoted(line_repr: str) -> str:
    """A response line (imaplib logs its ``repr``) with each quoted string as ``"..."``."""
    try:
        line = ast.literal_eval(line_repr)
    except (ValueError, SyntaxError):
        line = None
    if not isinstance(line, bytes):
        return "(a line not shown)"
    return repr(_QUOTED.sub(b'"..."', line))


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(level: str) -> logging.Handler:
    """Send every log record at ``level`` or above to stderr, one line each."""
    handler = _StderrHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(journal=journal_attached(sys.stderr)))
    handler.addFilter(ProtocolFilter())  # on the handler: it sees every imapclient logger
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
