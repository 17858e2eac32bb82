"""TLS contexts that always verify, and plain words for why a connection to a server failed."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """A verifying client TLS context: the system's CAs, plus ``ca_file`` when given."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def is_transient(exc: BaseException) -> bool:
    """Whether a failed connection may succeed later: a network fault, not a TLS mismatch."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return False
        if isinstance(cause, OSError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def connect_problem(exc: BaseException, section: str) -> str:
    """One sentence on why connecting failed: refused, untrusted certificate, timeout..."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (
                f"its TLS certificate is not trusted ({cause.verify_message}); if it uses a "
                f"private CA, set {section}.ca_file"
            )
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed ({cause.reason or cause}); check {section}.security and port"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused: nothing listens there; check host and port"
        if isinstance(cause, socket.gaierror):
            return f"unknown host ({cause.strerror})"
        if isinstance(cause, TimeoutError | socket.timeout):
            return "no answer before the timeout; check host, port and firewall"
        cause = cause.__cause__ or cause.__context__
    return f"can't connect ({exc})"
