"""Benchmark: 2,000 contacts through one send-due pass, next to a raw baseline in the same run.

Ours: ``Dispatcher.run_pass`` with every limit off (window always open, no gap, no caps),
so it renders, claims a ledger row, sends over one reused SMTP connection and records each.
Baseline: the same Jinja2 template (the segment's intro with its partials, and the context
outreach gives it, read from the same config) rendered and sent with aiosmtplib over one
connection, no ledger, no database. Both send to an aiosmtpd sink running in another process.

Usage: python benchmarks/send_due.py [CONTACTS]
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from outreach.config import load_config  # noqa: E402
from outreach.runtime.parts import build_parts  # noqa: E402
from outreach.services.contacts import import_contacts  # noqa: E402
from outreach.store.database import open_store  # noqa: E402

SEGMENT = "psychiatrist"
RELAXED = {
    "SMTP__SECURITY": "none",
    "SMTP__USERNAME": "",
    "SENDING__MIN_GAP_SECONDS": "0",
    "SENDING__DAYS": '["mon","tue","wed","thu","fri","sat","sun"]',
    "SENDING__START_TIME": "00:00",
    "SENDING__END_TIME": "23:59:59",
    "SENDING__JITTER_SECONDS": "0",
    "SENDING__MAX_PER_HOUR": "0",
    "SENDING__MAX_PER_DAY": "0",
    "SENDING__PER_ORGANIZATION_PER_DAY": "0",
    "SENDING__HOLIDAYS_COUNTRY": "",
    "SENDING__BLACKOUTS": "[]",
    "SEGMENTS__TEACHER__BLACKOUTS": "[]",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sink(port: int) -> subprocess.Popen[bytes]:
    sink = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            f"127.0.0.1:{port}",
            "-c",
            "aiosmtpd.handlers.Sink",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return sink
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the SMTP sink did not start")


def baseline_context(config: Path) -> dict[str, Any]:
    """What outreach hands the template, taken from the same configuration file."""
    settings = tomllib.loads(config.read_text())
    segment = settings["segments"][SEGMENT]
    return {
        "practice": settings["practice"],
        "sender": settings["sender"],
        "segment": {"name": SEGMENT, "label": segment["label"], **segment},
        "step": {"number": 1, "template": "intro", "total": len(segment["sequence"])},
    }


async def baseline(contacts: int, port: int) -> float:
    # The template outreach renders for this segment, its includes and all, in the same kind of
    # environment (sandboxed, strict); the greeting outreach composes is given as text.
    env = SandboxedEnvironment(
        loader=FileSystemLoader(str(ROOT / "templates")),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    template = env.get_template(f"{SEGMENT}/intro.txt.j2")
    context = baseline_context(ROOT / "config" / "outreach.example.toml")
    start = time.perf_counter()
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) as smtp:
        for i in range(contacts):
            contact = {"first_name": f"P{i}", "last_name": f"Q{i}"}
            text = template.render(contact=contact, greeting=f"Dear Dr. Q{i},", **context)
            header, _, body = text.partition("\n\n")  # "Subject: ...", a blank line, the body
            message = EmailMessage()
            message["From"] = "t@example.com"
            message["To"] = f"p{i}@x.example.com"
            message["Subject"] = header.removeprefix("Subject: ")
            message.set_content(body)
            await smtp.sendmail("t@example.com", [f"p{i}@x.example.com"], message.as_bytes())
    return time.perf_counter() - start


def ours(contacts: int, port: int, work: Path) -> float:
    config = work / "config" / "outreach.toml"
    config.parent.mkdir(parents=True)
    text = (ROOT / "config" / "outreach.example.toml").read_text()
    text = text.replace('dir = "../templates"', f'dir = "{ROOT / "templates"}"')
    config.write_text(text)
    for key, value in {**RELAXED, "SMTP__HOST": "127.0.0.1", "SMTP__PORT": str(port)}.items():
        os.environ[f"OUTREACH_{key}"] = value
    settings = load_config(config)
    store = open_store(settings.database_url)
    now = datetime.now(UTC)
    rows = "".join(f"p{i}@org{i}.example.com,P{i},Q{i},{SEGMENT}\n" for i in range(contacts))
    import_contacts(
        store,
        settings.the_pipeline,
        list(settings.segments),
        ("email,first_name,last_name,segment\n" + rows).encode(),
        source="bench.csv",
        now=now,
    )
    dispatcher = build_parts(settings, store).dispatcher
    start = time.perf_counter()
    report = asyncio.run(dispatcher.run_pass(now + timedelta(seconds=1)))
    elapsed = time.perf_counter() - start
    store.close()
    assert len(report.sent) == contacts, (len(report.sent), report.problems)
    return elapsed


def main() -> None:
    contacts = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    port = free_port()
    sink = start_sink(port)
    work = Path(tempfile.mkdtemp(prefix="outreach-bench-"))
    try:
        raw = asyncio.run(baseline(contacts, port))
        mine = ours(contacts, port, work)
    finally:
        sink.terminate()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{contacts:,} messages to an aiosmtpd sink in another process")
    print(
        f"baseline  Jinja2 render + aiosmtplib, one connection, no ledger: "
        f"{contacts / raw:7.0f} msg/s ({raw:.2f} s)"
    )
    print(
        f"outreach  send-due pass (render, ledger claim, send, record):    "
        f"{contacts / mine:7.0f} msg/s ({mine:.2f} s), {raw / mine:.0%} of the baseline"
    )


if __name__ == "__main__":
    main()
