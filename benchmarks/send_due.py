"""Benchmark: 2,000 contacts through one send-due pass, next to a raw baseline in the same run.

Ours: ``Dispatcher.run_pass`` with every limit off (window always open, no gap, no caps),
so it renders, claims a ledger row, sends over one reused SMTP connection and records each.
Baseline: the same Jinja2 template rendered and sent with aiosmtplib over one connection,
no ledger, no database. Both send to an aiosmtpd sink running in another process.

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
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from outreach.config import load_config  # noqa: E402
from outreach.runtime.parts import build_parts  # noqa: E402
from outreach.services.contacts import import_contacts  # noqa: E402
from outreach.store.database import open_store  # noqa: E402

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


async def baseline(contacts: int, port: int) -> float:
    env = SandboxedEnvironment(undefined=StrictUndefined)
    template = env.from_string(
        (ROOT / "templates" / "_default" / "intro.txt.j2")
        .read_text()
        .replace('{% include "_partials/greeting.txt.j2" %}', "Dear {{ contact.first_name }},")
        .replace('{% include "_partials/footer.txt.j2" %}', "--")
    )
    context = {
        "practice": {
            "therapist": "T",
            "name": "P",
            "ideal_client": "adults",
            "method": "CBT",
            "result": "calm",
        },
        "segment": {"needs": "help", "gains": "calm"},
    }
    start = time.perf_counter()
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) as smtp:
        for i in range(contacts):
            body = template.render(contact={"first_name": f"P{i}"}, **context)
            message = EmailMessage()
            message["From"] = "t@example.com"
            message["To"] = f"p{i}@x.example.com"
            message["Subject"] = "Hello"
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
    rows = "".join(f"p{i}@org{i}.example.com,P{i},Q{i},psychiatrist\n" for i in range(contacts))
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
