"""Entry point for ``python -m outreach``."""

from __future__ import annotations

from outreach.cli import main

main()
