"""The daemon's clock: the system's, or one started at ``OUTREACH_NOW`` for simulations."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from outreach.domain.fields import parse_local_time

log = logging.getLogger("outreach.daemon")  # pinned: its warning has always come from here


class Clock:
    """The daemon's idea of now: the system clock, or, with ``OUTREACH_NOW``, a clock that
    starts at that time and runs on from there (simulations, demos, tests)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._offset = start - datetime.now(UTC) if start else timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    @classmethod
    def from_environment(cls, zone: ZoneInfo) -> Clock:
        value = os.environ.get("OUTREACH_NOW", "")
        if not value:
            return cls()
        start = parse_local_time(value, zone, "OUTREACH_NOW")
        log.warning("OUTREACH_NOW is set: the daemon's clock starts at %s", start.isoformat())
        return cls(start)
