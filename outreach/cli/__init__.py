"""The ``outreach`` command line: Typer commands over the service functions, no logic of its own.

The commands live in one module per area (``auth``, ``contacts``, ``daemon``, ``demo``, ``inbound``,
``init``, ``outbound``, ``report``); importing them registers them on ``app``.
"""

from __future__ import annotations

from outreach.cli import auth, contacts, daemon, demo, inbound, init, outbound, report
from outreach.cli.common import app

__all__ = [
    "app",
    "auth",
    "contacts",
    "daemon",
    "demo",
    "inbound",
    "init",
    "main",
    "outbound",
    "report",
]


def main() -> None:
    """Console-script entry point."""
    app()
