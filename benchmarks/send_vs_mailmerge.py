"""Benchmark: outreach's send-due pass against mailmerge 2.3.0 and a raw aiosmtplib loop.

Every contender sends the same personalized plain-text intro (first name, organization,
practice name; about the length of ``templates/_default/intro.txt.j2``) to the same contacts
(2,000 by default), as a fresh process timed from its start to its exit, with its peak RSS
taken from ``os.wait4``'s rusage of that child:

- ``outreach send-due --once`` with ``[smtp] connections`` 1 and 4 (``OUTREACH_SMTP__CONNECTIONS``),
  every pacing limit off and ``hold_new = false``, on a fresh SQLite store into which the
  contacts were imported (``outreach contacts import``) before the clock starts;
- ``mailmerge --no-dry-run --no-limit`` 2.3.0 (installed on first use in its own venv under
  ``~/.cache/outreach-bench/mailmerge-venv``), security none: a Jinja2 template with header
  lines and a CSV database; it opens one SMTP connection per message;
- a raw loop (Jinja2 render, ``EmailMessage``, aiosmtplib) on one connection, and on four
  (asyncio tasks, each on its own connection, sharing one queue of contacts);
- the sink's ceiling: one message's bytes built once and sent to every contact on four
  connections, nothing rendered, so what no sender can beat on this machine (the sink is one
  Python process; on two cores it and the sender share the CPU). Not in the ratios.

All send to an aiosmtpd ``Sink`` in another process that counts the messages it accepts, so
every run is checked to have delivered every contact. Rounds are interleaved (each round runs
every contender once, in an order rotated per round) after one untimed warm-up round; every
process finds its modules' bytecode cached (``PYTHONPYCACHEPREFIX`` under the cache folder), as
after an install. The table gives the median and best msg/s, the largest peak RSS, and the
ratios issue 16 targets; "sessions" is how many SMTP sessions the sink saw in a run (mailmerge
opens one per message). Nothing is asserted on timing.

The sink offers PIPELINING, as the servers practices send through do (Postfix, Exchange
Online, Gmail); ``--no-pipelining`` takes it away. Only outreach uses it.

Usage: python benchmarks/send_vs_mailmerge.py [--rounds 7] [--contacts 2000] [--no-pipelining]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from string import Template

import aiosmtplib
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

ROOT = Path(__file__).resolve().parent.parent
MAILMERGE_VERSION = "2.3.0"
CACHE = Path.home() / ".cache" / "outreach-bench"
MAILMERGE_VENV = CACHE / "mailmerge-venv"
PYCACHE = CACHE / "pycache"
PRACTICE = "Calm Harbor Counseling"
SENDER = "maya@calmharbor.example.com"
SUBJECT = "A therapist for adults and teens with anxiety disorders"

# The message every contender sends, with ${first_name}, ${organization} and ${practice}
# standing for each one's own way of writing those fields. Outreach requires the footer to
# come from its partial, so the text is split there.
BODY = """\
Dear ${first_name},

I'm Maya Lindqvist, a therapist at ${practice}, and I work with adults and teens with anxiety \
disorders, using mindfulness-based cognitive therapy.

I know that people at ${organization} often look for a therapist who offers therapy, support \
and collaboration in treatment. With the client's written consent, I'm glad to keep you \
informed once we've started.

With the people you refer, I work toward better coping skills and fewer anxiety symptoms. For \
you, that can mean patients who have steady support between appointments, so the medication \
has a fair chance to work.

Could I send you a one-page summary of how I work, or set up a ten-minute call at a time that \
suits you?

Warm regards,
"""
FOOTER = """\
-- 
Maya Lindqvist, PhD, Licensed Psychologist
${practice} · 120 Harbor Street, Suite 4, Portland, ME 04101
+1 207 555 0143 · https://calmharbor.example.com

If you'd rather not hear from me, reply "unsubscribe" and I won't write again.
"""  # noqa: W291 -- "-- " with its space is the signature separator (RFC 3676, 4.3)

OUTREACH_FIELDS = {
    "first_name": "{{ contact.first_name }}",
    "organization": "{{ contact.organization }}",
    "practice": "{{ practice.name }}",
}
FLAT_FIELDS = {
    "first_name": "{{ first_name }}",
    "organization": "{{ organization }}",
    "practice": "{{ practice_name }}",
}

# A minimal configuration: one segment whose sequence is the intro, every pacing limit off.
CONFIG = """\
[practice]
name = "{practice}"
therapist = "Maya Lindqvist"
credentials = "PhD, Licensed Psychologist"
ideal_client = "adults and teens with anxiety disorders"
postal_address = "120 Harbor Street, Suite 4, Portland, ME 04101"
phone = "+1 207 555 0143"
website = "https://calmharbor.example.com"
timezone = "UTC"

[sender]
from_name = "Dr. Maya Lindqvist"
from_address = "{sender}"

[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
connections = 1

[imap]
host = "127.0.0.1"
security = "none"

[storage]
url = "sqlite:///{database}"

[sending]
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
start_time = 00:00:00
end_time = 23:59:59
max_per_hour = 0
max_per_day = 0
min_gap_seconds = 0
jitter_seconds = 0
per_organization_per_day = 0
holidays_country = ""
blackouts = []
hold_new = false

[templates]
dir = "{templates}"

[daemon]
digest = false

[segments.clinic]
label = "Clinics"
sequence = [{{ template = "intro", delay_business_days = 0 }}]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the two helper processes: the sink, and the raw loop -------------------------------------


def run_sink(port: int, pipelining: bool) -> None:
    """Accept and discard mail on ``port``. Each line on stdin is answered with the messages
    accepted so far and the SMTP sessions they came on since the previous line. With
    ``pipelining`` the EHLO reply offers PIPELINING (RFC 2920), as Postfix, Exchange Online
    and Gmail do (aiosmtpd reads pipelined commands in order either way, but doesn't say so);
    only outreach uses it: smtplib and aiosmtplib send one command at a time."""
    # Only the sink process needs aiosmtpd; the raw loop's timed start-up must not import it.
    from aiosmtpd.controller import Controller  # noqa: PLC0415
    from aiosmtpd.handlers import Sink  # noqa: PLC0415
    from aiosmtpd.smtp import Session  # noqa: PLC0415

    class CountingSink(Sink):
        def __init__(self) -> None:
            self.received = 0
            self.peers: set[object] = set()  # (address, port): one per session

        async def handle_DATA(self, server: object, session: Session, envelope: object) -> str:
            self.received += 1
            self.peers.add(session.peer)
            return "250 OK"

        async def handle_EHLO(
            self,
            server: object,
            session: Session,
            envelope: object,
            hostname: str,
            responses: list[str],
        ) -> list[str]:
            session.host_name = hostname
            if pipelining:
                responses.insert(-1, "250-PIPELINING")
            return responses

    handler = CountingSink()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    for _ in sys.stdin:
        print(handler.received, len(handler.peers), flush=True)
        handler.peers.clear()
    controller.stop()


def run_raw(
    port: int, connections: int, database: Path, template_path: Path, prebuilt: bool = False
) -> None:
    """Render and send each contact of ``database`` on ``connections`` SMTP sessions. With
    ``prebuilt``, the same bytes to every contact and nothing built: what the sink can take."""
    env = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
    template = env.from_string(template_path.read_text())
    with database.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if prebuilt:
        ready = EmailMessage()
        ready["From"], ready["To"], ready["Subject"] = SENDER, rows[0]["email"], SUBJECT
        ready.set_content(template.render(rows[0]))
        data = ready.as_bytes()

        async def blast(queue: asyncio.Queue[dict[str, str]]) -> None:
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) as smtp:
                while not queue.empty():
                    await smtp.sendmail(SENDER, [queue.get_nowait()["email"]], data)

        async def blast_all() -> None:
            queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
            for row in rows:
                queue.put_nowait(row)
            await asyncio.gather(*(blast(queue) for _ in range(connections)))

        asyncio.run(blast_all())
        return

    async def worker(queue: asyncio.Queue[dict[str, str]]) -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) as smtp:
            while not queue.empty():
                row = queue.get_nowait()
                message = EmailMessage()
                message["From"] = f"Dr. Maya Lindqvist <{SENDER}>"
                message["To"] = row["email"]
                message["Subject"] = SUBJECT
                message["Date"] = formatdate()
                message["Message-ID"] = make_msgid(domain="calmharbor.example.com")
                message.set_content(template.render(row))
                await smtp.send_message(message)

    async def send_all() -> None:
        queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        for row in rows:
            queue.put_nowait(row)
        await asyncio.gather(*(worker(queue) for _ in range(connections)))

    asyncio.run(send_all())


# --- the parent: set up, time, print ----------------------------------------------------------


@dataclass
class Sink:
    """The sink process, asked for its count over its stdin."""

    process: subprocess.Popen[str]

    @classmethod
    def start(cls, port: int, pipelining: bool) -> Sink:
        process = subprocess.Popen(
            [sys.executable, __file__, "_sink", str(port), "pipelining" if pipelining else "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("the SMTP sink did not start")
        return cls(process)

    def received(self) -> tuple[int, int]:
        """Messages accepted so far, and the sessions they came on since the last call."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        messages, sessions = self.process.stdout.readline().split()
        return int(messages), int(sessions)

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)


@dataclass
class Run:
    seconds: float
    peak_rss_kib: int
    sessions: int = 0  # SMTP sessions the sink saw


@dataclass
class Contender:
    name: str
    runs: list[Run] = field(default_factory=list)

    def rates(self, contacts: int) -> list[float]:
        return [contacts / run.seconds for run in self.runs]


def clean_environment() -> dict[str, str]:
    """This environment without anything that would steer outreach elsewhere, and with
    bytecode cached as after an install: a checkout run with PYTHONDONTWRITEBYTECODE would
    compile outreach's own modules at every start, while mailmerge's venv has its .pyc files.
    """
    dropped = ("OUTREACH_", "STATE_DIRECTORY", "CREDENTIALS_DIRECTORY", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


def timed(command: list[str], env: dict[str, str], work: Path) -> Run:
    """Run ``command`` to its exit: wall time from start to exit, and the child's peak RSS."""
    log = work / "stderr.log"
    with log.open("wb") as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(
            command,
            env=env,
            cwd=work,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}:\n{tail}")
    return Run(elapsed, usage.ru_maxrss)  # KiB on Linux


def fill(text: str, fields: dict[str, str]) -> str:
    return Template(text).substitute(fields)


def write_inputs(work: Path, contacts: int) -> None:
    """The contacts (outreach's CSV and mailmerge's database) and every contender's template."""
    with (work / "contacts.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["email", "first_name", "last_name", "organization", "segment"])
        for i in range(contacts):
            out.writerow(
                [f"p{i}@org{i}.example.com", f"Priya{i}", f"Reyes{i}", f"Clinic {i}", "clinic"]
            )
    with (work / "database.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["email", "first_name", "organization", "practice_name"])
        for i in range(contacts):
            out.writerow([f"p{i}@org{i}.example.com", f"Priya{i}", f"Clinic {i}", PRACTICE])

    templates = work / "templates"
    (templates / "_default").mkdir(parents=True)
    (templates / "_partials").mkdir()
    (templates / "_default" / "intro.txt.j2").write_text(
        f"Subject: {SUBJECT}\n\n"
        + fill(BODY, OUTREACH_FIELDS)
        + '{% include "_partials/footer.txt.j2" %}\n'
    )
    (templates / "_partials" / "footer.txt.j2").write_text(fill(FOOTER, OUTREACH_FIELDS))

    flat_body = fill(BODY + FOOTER, FLAT_FIELDS)
    (work / "raw.txt.j2").write_text(flat_body)
    (work / "mailmerge_template.txt").write_text(
        "TO: {{ email }}\n"
        f"FROM: Dr. Maya Lindqvist <{SENDER}>\n"
        f"SUBJECT: {SUBJECT}\n\n" + flat_body
    )


def mailmerge_command() -> Path:
    """mailmerge 2.3.0 in its own venv, installed on first use."""
    program = MAILMERGE_VENV / "bin" / "mailmerge"
    if program.exists():
        version = subprocess.run(
            [program, "--version"], check=False, capture_output=True, text=True
        ).stdout
        if version.split()[-1:] == [MAILMERGE_VERSION]:
            return program
    print(f"installing mailmerge {MAILMERGE_VERSION} into {MAILMERGE_VENV} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", MAILMERGE_VENV], check=True)
    subprocess.run(
        [
            MAILMERGE_VENV / "bin" / "python",
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"mailmerge=={MAILMERGE_VERSION}",
        ],
        check=True,
    )
    return program


class Bench:
    """One sink, one work folder, and a way to run each contender once."""

    def __init__(self, contacts: int, work: Path, sink: Sink, port: int) -> None:
        self.contacts = contacts
        self.work = work
        self.sink = sink
        self.port = port
        self.env = clean_environment()
        self.mailmerge = mailmerge_command()
        write_inputs(work, contacts)
        (work / "mailmerge_server.conf").write_text(
            f"[smtp_server]\nhost = 127.0.0.1\nport = {port}\nratelimit = 0\n"
        )
        self.passes = 0

    def contenders(self) -> dict[str, Callable[[], Run]]:
        return {
            "outreach send-due, 1 connection": lambda: self.outreach(1),
            "outreach send-due, 4 connections": lambda: self.outreach(4),
            f"mailmerge {MAILMERGE_VERSION}": self.mailmerge_run,
            "raw Jinja2 + aiosmtplib, 1 connection": lambda: self.raw(1),
            "raw Jinja2 + aiosmtplib, 4 connections": lambda: self.raw(4),
            "sink's ceiling: same bytes, 4 connections": lambda: self.raw(4, prebuilt=True),
        }

    def checked(self, name: str, run: Callable[[], Run]) -> Run:
        """Run a contender and check that the sink got every message."""
        before, _ = self.sink.received()
        result = run()
        after, result.sessions = self.sink.received()
        if after - before != self.contacts:
            raise RuntimeError(
                f"{name}: the sink received {after - before} messages of {self.contacts}"
            )
        return result

    def outreach(self, connections: int) -> Run:
        self.passes += 1
        folder = self.work / f"outreach-{self.passes}"
        folder.mkdir()
        config = folder / "outreach.toml"
        config.write_text(
            CONFIG.format(
                practice=PRACTICE,
                sender=SENDER,
                port=self.port,
                database=folder / "outreach.sqlite3",
                templates=self.work / "templates",
            )
        )
        outreach = [sys.executable, "-m", "outreach", "-c", str(config)]
        # Not timed: a fresh store holding the contacts, all due now.
        subprocess.run(
            [*outreach, "contacts", "import", str(self.work / "contacts.csv")],
            env=self.env,
            cwd=folder,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        env = {**self.env, "OUTREACH_SMTP__CONNECTIONS": str(connections)}
        run = timed([*outreach, "send-due", "--once"], env, folder)
        shutil.rmtree(folder)
        return run

    def mailmerge_run(self) -> Run:
        return timed(
            [
                str(self.mailmerge),
                "--no-dry-run",
                "--no-limit",
                "--output-format",
                "text",
                "--template",
                "mailmerge_template.txt",
                "--database",
                "database.csv",
                "--config",
                "mailmerge_server.conf",
            ],
            self.env,
            self.work,
        )

    def raw(self, connections: int, prebuilt: bool = False) -> Run:
        return timed(
            [
                sys.executable,
                __file__,
                "_raw",
                str(self.port),
                str(connections),
                str(self.work / "database.csv"),
                str(self.work / "raw.txt.j2"),
                *(["prebuilt"] if prebuilt else []),
            ],
            self.env,
            self.work,
        )


def ratio_line(label: str, num: Contender, den: Contender, contacts: int, target: float) -> str:
    median = statistics.median(num.rates(contacts)) / statistics.median(den.rates(contacts))
    best = max(num.rates(contacts)) / max(den.rates(contacts))
    verdict = "met" if median >= target else "NOT met"
    return (
        f"  {label:38s} {median:5.2f}x median  {best:5.2f}x best   target >= {target}x: {verdict}"
    )


def report(contenders: dict[str, Contender], contacts: int, rounds: int) -> None:
    print()
    print(
        f"{contacts:,} messages to an aiosmtpd sink in another process, {rounds} interleaved "
        "rounds; each run a fresh process, timed from start to exit"
    )
    print(
        f"  {'contender':40s} {'msg/s median':>12s} {'best':>6s} {'s median':>9s} "
        f"{'peak RSS':>9s} {'sessions':>8s}"
    )
    for name, c in contenders.items():
        rates = c.rates(contacts)
        seconds = statistics.median(run.seconds for run in c.runs)
        rss = max(run.peak_rss_kib for run in c.runs) / 1024
        median = statistics.median(rates)
        sessions = max(run.sessions for run in c.runs)
        print(
            f"  {name:40s} {median:12.0f} {max(rates):6.0f} {seconds:9.2f} {rss:5.0f} MiB "
            f"{sessions:8d}"
        )
    o1, o4, mm, r1, r4, _ceiling = contenders.values()
    print("ratios (msg/s over msg/s)")
    print(ratio_line("outreach (4 conn) / mailmerge", o4, mm, contacts, 2.0))
    print(ratio_line("outreach (1 conn) / mailmerge", o1, mm, contacts, 1.2))
    print(ratio_line("outreach (1 conn) / raw (1 conn)", o1, r1, contacts, 0.8))
    print(ratio_line("outreach (4 conn) / raw (4 conn)", o4, r4, contacts, 0.8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--contacts", type=int, default=2000)
    parser.add_argument(
        "--no-pipelining",
        action="store_true",
        help="the sink doesn't offer PIPELINING (real servers do; only outreach uses it)",
    )
    args = parser.parse_args()

    port = free_port()
    sink = Sink.start(port, pipelining=not args.no_pipelining)
    print(f"the sink {'does not offer' if args.no_pipelining else 'offers'} PIPELINING")
    work = Path(tempfile.mkdtemp(prefix="outreach-bench-"))
    try:
        bench = Bench(args.contacts, work, sink, port)
        runs = bench.contenders()
        results = {name: Contender(name) for name in runs}
        names = list(runs)
        print("warm-up round (untimed: fills the bytecode and page caches)", flush=True)
        for name in names:
            bench.checked(name, runs[name])
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                run = bench.checked(name, runs[name])
                results[name].runs.append(run)
                print(
                    f"round {r + 1}/{args.rounds}  {name:40s} {run.seconds:6.2f} s  "
                    f"{run.sessions} sessions",
                    flush=True,
                )
        report(results, args.contacts, args.rounds)
    finally:
        sink.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_sink":
        run_sink(int(sys.argv[2]), sys.argv[3] == "pipelining")
    elif len(sys.argv) > 1 and sys.argv[1] == "_raw":
        run_raw(
            int(sys.argv[2]),
            int(sys.argv[3]),
            Path(sys.argv[4]),
            Path(sys.argv[5]),
            prebuilt=sys.argv[6:] == ["prebuilt"],
        )
    else:
        main()
