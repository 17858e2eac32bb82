"""Benchmark: a dispatch pass's cost must follow the contacts that are due, not the store's size.

Fills a SQLite store with N contacts of which 100 are due now (the rest were checked and
have their next step days away, as after earlier passes), then times the pass's selection:
finding the due steps and pacing them (``DueSteps.scan`` + ``schedule``, no SMTP). Prints
the time for 10,000 and 1,000,000 contacts; the baseline is the same query without the
``next_check_at`` index condition, i.e. a scan of every active contact.

Usage: python benchmarks/dispatch_scale.py [SIZES...]
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from outreach.config import load_config  # noqa: E402
from outreach.domain.pacing import schedule  # noqa: E402
from outreach.domain.sequencing import ACTIVE_STAGES  # noqa: E402
from outreach.services.due import DueSteps  # noqa: E402
from outreach.store.database import open_store  # noqa: E402
from outreach.store.models import ContactRow  # noqa: E402

DUE = 100
NOW = datetime(2027, 3, 1, 15, 0, tzinfo=UTC)  # a Monday, 10:00 in New York


def fill(store_url: str, size: int) -> None:
    store = open_store(store_url)
    later = NOW + timedelta(days=5)
    with store.engine.begin() as connection:
        batch = []
        for i in range(size):
            due = i < DUE
            batch.append(
                {
                    "email": f"p{i}@org{i}.example.com",
                    "email_key": f"p{i}@org{i}.example.com",
                    "first_name": f"P{i}",
                    "last_name": f"Q{i}",
                    "title": None,
                    "organization": f"Org {i}",
                    "segment": "psychiatrist",
                    "timezone": None,
                    "tags": [],
                    "custom": {},
                    "stage": "new",
                    "paused_until": None,
                    "created_at": NOW - timedelta(days=1),
                    "updated_at": NOW,
                    "next_check_at": NOW - timedelta(minutes=1) if due else later,
                }
            )
            if len(batch) == 50_000:
                connection.execute(insert(ContactRow), batch)
                batch = []
        if batch:
            connection.execute(insert(ContactRow), batch)
    store.close()


def measure(due: DueSteps, indexed: bool) -> float:
    times = []
    for _ in range(5 if indexed else 1):
        with due.store.session() as session:
            start = time.perf_counter()
            if indexed:
                candidates = due.scan(session, NOW).candidates
            else:
                rows = session.scalars(
                    select(ContactRow).where(ContactRow.stage.in_(ACTIVE_STAGES))
                ).all()
                candidates = [r for r in rows if r.next_check_at and r.next_check_at <= NOW]
            schedule(
                due.due_sends(candidates) if indexed else [],
                due.policy,
                due.send_log(session, NOW),
                start=NOW,
                until=NOW,
            )
            times.append(time.perf_counter() - start)
            session.rollback()
        assert len(candidates) == DUE
    return statistics.median(times)


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [10_000, 1_000_000]
    work = Path(tempfile.mkdtemp(prefix="outreach-scale-"))
    try:
        config = work / "config" / "outreach.toml"
        config.parent.mkdir(parents=True)
        config.write_text(
            (ROOT / "config" / "outreach.example.toml")
            .read_text()
            .replace('dir = "../templates"', f'dir = "{ROOT / "templates"}"')
        )
        print(f"{DUE} contacts due; median of 5 selections (baseline: 1) (scan + schedule)")
        for size in sizes:
            os.environ["OUTREACH_STORAGE__URL"] = f"sqlite:///{work}/scale{size}.sqlite3"
            settings = load_config(config)
            fill(settings.database_url, size)
            store = open_store(settings.database_url)
            due = DueSteps(store, settings)
            ours = measure(due, indexed=True)
            scan = measure(due, indexed=False)
            store.close()
            print(
                f"{size:>10,} contacts: outreach pass selection {ours * 1000:8.1f} ms;"
                f" baseline scan of all active contacts {scan * 1000:9.1f} ms"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
