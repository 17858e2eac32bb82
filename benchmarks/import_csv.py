"""Benchmark: importing a 100,000-row contacts CSV, next to a raw baseline from the same run.

Ours: ``outreach.contacts.import_contacts`` (parse, validate every address, segment and time
zone, one transaction with a history row per contact) into a fresh SQLite store.
Baseline: the same file through ``csv.reader`` and one ``executemany`` into a bare SQLite
table, no validation: the floor for reading the file and writing the rows.

Usage: python benchmarks/import_csv.py [ROWS] [--postgres URL]
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from outreach.domain.pipeline import Pipeline
from outreach.services.contacts import import_contacts
from outreach.store.database import open_store

SEGMENTS = ["psychiatrist", "physician", "pediatrician", "teacher", "clergy", "attorney"]
ZONES = ["", "America/New_York", "America/Chicago", "America/Los_Angeles", "Europe/London"]


def make_csv(rows: int) -> bytes:
    rng = random.Random(7)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "E-mail Address",
            "First Name",
            "Last Name",
            "Title",
            "Company",
            "Segment",
            "Time Zone",
            "Categories",
            "Years In Practice",
            "Office",
        ]
    )
    for i in range(rows):
        writer.writerow(
            [
                f"source{i}@clinic{i % 5000}.example.com",
                f"First{i}",
                f"Last{i}",
                rng.choice(["Dr.", "Ms.", "Mr.", "Pastor", ""]),
                f"Clinic {i % 5000}",
                rng.choice(SEGMENTS),
                rng.choice(ZONES),
                rng.choice(["", "met 2025", "a; b"]),
                str(rng.randint(1, 40)),
                f"Suite {rng.randint(1, 400)}",
            ]
        )
    return out.getvalue().encode()


def ours(data: bytes, url: str) -> float:
    store = open_store(url)
    try:
        start = time.perf_counter()
        summary = import_contacts(
            store,
            Pipeline.with_extra([]),
            SEGMENTS,
            data,
            source="bench.csv",
            now=datetime.now(UTC),
        )
        elapsed = time.perf_counter() - start
    finally:
        store.close()
    assert summary.created == data.count(b"\n") - 1
    return elapsed


def baseline(data: bytes, path: Path) -> float:
    start = time.perf_counter()
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))[1:]
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE TABLE c (email TEXT UNIQUE, first TEXT, last TEXT, title TEXT, org TEXT,"
        " segment TEXT, tz TEXT, tags TEXT, years TEXT, office TEXT)"
    )
    with db:
        db.executemany("INSERT INTO c VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
    db.close()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="?", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres", help="also import into this (empty) PostgreSQL database")
    args = parser.parse_args()
    data = make_csv(args.rows)
    print(f"{args.rows:,} rows, {len(data) / 1e6:.1f} MB; median of {args.repeat} runs", flush=True)
    our_times, raw_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.repeat):
            raw_times.append(baseline(data, Path(tmp) / f"raw{run}.sqlite3"))
            our_times.append(ours(data, f"sqlite:///{tmp}/ours{run}.sqlite3"))
    raw, mine = statistics.median(raw_times), statistics.median(our_times)
    print(
        f"baseline  csv.reader + executemany, no validation: {raw:6.2f} s "
        f"({args.rows / raw:,.0f} rows/s)"
    )
    print(
        f"outreach  contacts import into SQLite:             {mine:6.2f} s "
        f"({args.rows / mine:,.0f} rows/s), {mine / raw:.1f}x the baseline"
    )
    if args.postgres:
        pg = ours(data, args.postgres)
        print(
            f"outreach  contacts import into PostgreSQL:         {pg:6.2f} s "
            f"({args.rows / pg:,.0f} rows/s)"
        )
    sys.exit(0)


if __name__ == "__main__":
    main()
