"""Idle daemon: memory (RSS) and CPU seconds per hour, with 10,000 contacts in the store.

``outreach run`` is started as systemd would (a child process with production defaults:
a dispatch pass every 60 s, the inbox in IDLE) on a Dovecot and an aiosmtpd started here.
After READY and a warm-up, its CPU time and RSS are read from /proc over a window, in two
states of the store:

- settled: 10,000 contacts that need nothing now (all `engaged`): each pass finds nothing due
  (the first pass of the first run still examines each once and sets its next check; the run
  after it, "restarted", starts with every next check already set);
- backlog: 10,000 new contacts all due, but outside the sending window (a day the practice
  doesn't send on), so each pass re-reads every one of them and places none.

Baseline, same run: a bare Python process doing the minimum any such daemon does: an IMAPClient
session in IDLE (checked every second, like ours) plus an asyncio timer every 60 s.

Usage: python benchmarks/daemon_idle.py [WINDOW_SECONDS] [CONTACTS]
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from outreach.config import load_config  # noqa: E402
from outreach.services.contacts import import_contacts  # noqa: E402
from outreach.store.database import open_store  # noqa: E402
from tests.mailstack import start_dovecot, start_smtp  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
WARM_UP_SECONDS = 10.0
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

BASELINE = """
import asyncio, sys, threading
from imapclient import IMAPClient
host, port, user, password, ca = sys.argv[1:6]
import ssl
context = ssl.create_default_context(cafile=ca)
def idle():
    with IMAPClient(host, port=int(port), ssl=True, ssl_context=context) as imap:
        imap.login(user, password)
        imap.select_folder("INBOX", readonly=True)
        imap.idle()
        while True:
            imap.idle_check(timeout=1)
threading.Thread(target=idle, daemon=True).start()
async def main():
    print("ready", flush=True)
    while True:
        await asyncio.sleep(60)
asyncio.run(main())
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(pid: int, window: float) -> tuple[float, float]:
    """(CPU seconds per hour, RSS MiB at the end) over ``window`` seconds after a warm-up."""
    time.sleep(WARM_UP_SECONDS)
    start_cpu, start = cpu_seconds(pid), time.monotonic()
    time.sleep(window)
    used = cpu_seconds(pid) - start_cpu
    return used * 3600 / (time.monotonic() - start), rss_mib(pid)


def wait_ready(notify: socket.socket, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if b"READY=1" in notify.recv(4096):
                return
        except TimeoutError:
            if process.poll() is not None:
                raise SystemExit(f"outreach run exited with {process.returncode}") from None
    raise SystemExit("outreach run never became ready")


def run_daemon(config: Path, env: dict[str, str], work: Path, window: float) -> tuple[float, float]:
    path = work / "notify"
    path.unlink(missing_ok=True)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(path))
    notify.settimeout(1)
    log = (work / "daemon.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "outreach", "--config", str(config), "run"],
        env={**env, "NOTIFY_SOCKET": str(path)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(notify, process)
        return measure(process.pid, window)
    finally:
        process.terminate()
        process.wait(20)
        notify.close()
        log.close()


def main() -> None:
    window = float(sys.argv[1]) if len(sys.argv) > 1 else 180.0
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    dovecot = start_dovecot()
    smtp = start_smtp(dovecot.cert, dovecot.directory / "key.pem")
    work = Path(tempfile.mkdtemp(prefix="oib-", dir="/tmp"))
    try:
        user, password = dovecot.user(6)
        dovecot.empty(user)
        config = work / "config" / "outreach.toml"
        config.parent.mkdir(parents=True)
        text = (ROOT / "config" / "outreach.example.toml").read_text().split("\n[[rules]]")[0]
        config.write_text(text.replace('dir = "../templates"', f'dir = "{ROOT / "templates"}"'))
        today = DAYS[datetime.now(UTC).weekday()]
        other_day = DAYS[(datetime.now(UTC).weekday() + 3) % 7]
        env = {
            **os.environ,
            "OUTREACH_SMTP__HOST": "127.0.0.1",
            "OUTREACH_SMTP__PORT": str(smtp.port),
            "OUTREACH_SMTP__USERNAME": user,
            "OUTREACH_SMTP__CA_FILE": str(dovecot.cert),
            "OUTREACH_SMTP__PASSWORD": password,
            "OUTREACH_IMAP__HOST": "127.0.0.1",
            "OUTREACH_IMAP__PORT": str(dovecot.imaps_port),
            "OUTREACH_IMAP__USERNAME": user,
            "OUTREACH_IMAP__CA_FILE": str(dovecot.cert),
            "OUTREACH_IMAP__PASSWORD": password,
            "OUTREACH_DAEMON__DIGEST": "false",
            "OUTREACH_SENDING__DAYS": f'["{other_day}"]',  # never today: nothing is placed
        }
        os.environ.update(env)
        settings = load_config(config)
        store = open_store(settings.database_url)
        rows = "".join(f"p{n}@org{n}.example.com,P{n},psychiatrist,engaged\n" for n in range(count))
        import_contacts(
            store,
            settings.the_pipeline,
            list(settings.segments),
            ("email,first_name,segment,stage\n" + rows).encode(),
            source="bench",
            now=datetime.now(UTC) - timedelta(days=1),
        )
        store.close()
        print(f"idle daemon, {count} contacts, {window:.0f} s window after {WARM_UP_SECONDS:.0f} s")
        print(f"(sending days: {other_day} only; today is {today})")

        baseline = subprocess.Popen(
            [
                sys.executable,
                "-c",
                BASELINE,
                "127.0.0.1",
                str(dovecot.imaps_port),
                user,
                password,
                str(dovecot.cert),
            ],
            stdout=subprocess.PIPE,
        )
        assert baseline.stdout is not None
        baseline.stdout.readline()
        try:
            base_cpu, base_rss = measure(baseline.pid, window)
        finally:
            baseline.terminate()
            baseline.wait()
        print(
            f"  baseline  IMAPClient IDLE + asyncio timer:  {base_cpu:6.2f} CPU s/hour, "
            f"RSS {base_rss:6.1f} MiB"
        )

        settled_cpu, settled_rss = run_daemon(config, env, work, window)
        print(
            f"  outreach run, settled (nothing due):      {settled_cpu:6.2f} CPU s/hour, "
            f"RSS {settled_rss:6.1f} MiB"
        )

        # The first run's first pass examined all contacts and set their next checks; a
        # restart finds nothing to examine: what the daemon weighs without that one-off peak.
        restarted_cpu, restarted_rss = run_daemon(config, env, work, window)
        print(
            f"  outreach run, settled, restarted:         {restarted_cpu:6.2f} CPU s/hour, "
            f"RSS {restarted_rss:6.1f} MiB"
        )

        store = open_store(settings.database_url)
        with store.engine.begin() as connection:
            connection.exec_driver_sql(
                "UPDATE contacts SET stage = 'new', next_check_at = created_at"
            )
        store.close()
        backlog_cpu, backlog_rss = run_daemon(config, env, work, window)
        print(
            f"  outreach run, backlog ({count} due, window shut): {backlog_cpu:6.2f} CPU s/hour, "
            f"RSS {backlog_rss:6.1f} MiB"
        )
    finally:
        smtp.stop()
        dovecot.stop()


if __name__ == "__main__":
    main()
