"""The ``outreach`` command line: Typer commands over the service functions, no logic of its own.

The commands live in ``cli_contacts``, ``cli_daemon``, ``cli_outbound``, ``cli_inbound`` and
``cli_report``; importing them registers them on ``app``.
"""

from __future__ import annotations

from outreach import (
    cli_contacts,
    cli_daemon,
    cli_demo,
    cli_inbound,
    cli_init,
    cli_outbound,
    cli_report,
)
from outreach.cli_common import app

__all__ = [
    "app",
    "cli_contacts",
    "cli_daemon",
    "cli_demo",
    "cli_inbound",
    "cli_init",
    "cli_outbound",
    "cli_report",
    "main",
]


def main() -> None:
    """Console-script entry point."""
    app()
