"""Real servers on 127.0.0.1 for the tests: Dovecot (IMAP, IMAPS, LMTP), aiosmtpd, PostgreSQL.

Each ``start_*`` returns a handle with the ports and a ``stop()``; ``ServerMissing`` says
the server's programs are not installed and how to install them.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import glob
import json
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any

INSTALL_HINT = "install it with: sudo ./scripts/install-system-deps"
PASSWORD = "secret-pw-{n:02d}"
USER = "user{n:02d}@example.test"
USERS = 20


class ServerMissing(RuntimeError):
    """A server the tests need is not installed on this machine."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_banner(port: int, prefix: bytes, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if s.recv(100).startswith(prefix):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing answered {prefix!r} on 127.0.0.1:{port}")
        time.sleep(0.05)


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 (it is its own CA)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


# --- Dovecot ----------------------------------------------------------------------------------

DOVECOT_CONF = """\
base_dir = {d}/run
state_dir = {d}/state
instance_name = outreach-test-{imap}
protocols = imap lmtp
listen = 127.0.0.1
log_path = {d}/dovecot.log
default_internal_user = dovecot
default_login_user = dovenull
ssl = yes
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
ssl_dh = </usr/share/dovecot/dh.pem
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
{passwd_file_mechanisms}}}
{oauth2_passdb}userdb {{
  driver = static
  args = uid=vmail gid=vmail home={d}/mail/%u
}}
mail_location = maildir:{d}/mail/%u/Maildir
first_valid_uid = 100
mail_max_userip_connections = 200
mail_fsync = never
namespace inbox {{
  inbox = yes
  mailbox Sent {{
    special_use = \\Sent
    auto = create
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
}}
protocol lmtp {{
  postmaster_address = postmaster@example.test
}}
"""


@dataclass
class Dovecot:
    """A running standalone Dovecot with a pool of users ``user01..20@example.test``."""

    directory: Path
    imap_port: int
    imaps_port: int
    lmtp_port: int
    cert: Path
    host: str = "127.0.0.1"

    @property
    def conf(self) -> Path:
        return self.directory / "dovecot.conf"

    @staticmethod
    def user(n: int) -> tuple[str, str]:
        return USER.format(n=n), PASSWORD.format(n=n)

    def deliver(self, recipient: str, message: bytes, sender: str = "sender@example.test") -> None:
        """Deliver one message into ``recipient``'s INBOX over LMTP."""
        with smtplib.LMTP(self.host, self.lmtp_port) as lmtp:
            lmtp.sendmail(sender, [recipient], message)

    def empty(self, user: str) -> None:
        """Expunge every message of ``user`` (mailboxes are reused between tests)."""
        subprocess.run(
            ["doveadm", "-c", str(self.conf), "expunge", "-u", user, "mailbox", "*", "all"],
            check=True,
            capture_output=True,
        )

    def stop_process(self) -> None:
        pid_file = self.directory / "run" / "master.pid"
        pid = int(pid_file.read_text()) if pid_file.exists() else None
        subprocess.run(["doveadm", "-c", str(self.conf), "stop"], capture_output=True, check=False)
        if pid is not None:
            _wait_gone(pid)

    def start_process(self) -> None:
        errors = self.directory / "start.err"
        with errors.open("wb") as sink:
            # Not capture_output: the daemon's children would hold the pipes open forever.
            result = subprocess.run(
                ["dovecot", "-c", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=sink,
                check=False,
            )
        if result.returncode:
            raise RuntimeError(f"dovecot failed to start: {errors.read_text(errors='replace')}")
        wait_for_banner(self.imap_port, b"* OK")

    def restart(self) -> None:
        """Stop and start the same server (same ports, same mail)."""
        self.stop_process()
        self.start_process()

    def stop(self) -> None:
        self.stop_process()
        shutil.rmtree(self.directory, ignore_errors=True)


#: What ``start_dovecot(oauth2_introspection_url=...)`` adds: a passdb checking tokens by RFC 7662
#: introspection (POST token=...) at every login (Dovecot caches nothing by default).
DOVECOT_OAUTH2_PASSDB = """\
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {d}/dovecot-oauth2.conf.ext
}}
# No anvil penalty (2, 4, 8, 15 s before every auth reply from 127.0.0.1 after failures):
# these tests fail token logins on purpose.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""
DOVECOT_OAUTH2_CONF = """\
introspection_mode = post
introspection_url = {url}
username_attribute = username
active_attribute = active
active_value = true
timeout_msecs = 10000
"""


def start_dovecot(
    oauth2_introspection_url: str | None = None,
    *,
    certificate: tuple[Path, Path] | None = None,
) -> Dovecot:
    """Start a Dovecot; each call a new instance with its own ports and mail.

    ``oauth2_introspection_url`` adds the XOAUTH2 and OAUTHBEARER mechanisms, with tokens checked
    against that RFC 7662 endpoint (PLAIN and LOGIN keep working with the users' passwords).
    ``certificate`` (cert, key) serves that pair instead of a new self-signed one, so that one
    CA file can be trusted for several servers.
    """
    if shutil.which("dovecot") is None or not os.path.exists("/usr/lib/dovecot/lmtp"):
        raise ServerMissing(
            f"Dovecot (dovecot-imapd, dovecot-lmtpd) is not installed; {INSTALL_HINT}"
        )
    for account in ("vmail", "dovecot", "dovenull"):
        if subprocess.run(["id", account], capture_output=True, check=False).returncode:
            raise ServerMissing(f"the system user {account!r} is missing; {INSTALL_HINT}")
    # Not under pytest's 0700 tmp tree: Dovecot's unprivileged processes must reach it.
    directory = Path(tempfile.mkdtemp(prefix="outreach-dovecot-"))
    directory.chmod(0o755)
    if certificate is None:
        cert, _key = make_certificate(directory)
    else:
        cert = directory / "cert.pem"
        shutil.copyfile(certificate[0], cert)
        shutil.copyfile(certificate[1], directory / "key.pem")
    (directory / "key.pem").chmod(0o600)
    users = directory / "users"
    users.write_text(
        "".join(
            f"{USER.format(n=n)}:{{PLAIN}}{PASSWORD.format(n=n)}\n" for n in range(1, USERS + 1)
        )
    )
    shutil.chown(users, group="dovecot")
    users.chmod(0o640)
    (directory / "mail").mkdir(exist_ok=True)
    shutil.chown(directory / "mail", "vmail", "vmail")
    server = Dovecot(directory, free_port(), free_port(), free_port(), cert)
    oauth2 = oauth2_introspection_url is not None
    if oauth2:
        (directory / "dovecot-oauth2.conf.ext").write_text(
            DOVECOT_OAUTH2_CONF.format(url=oauth2_introspection_url)
        )
    server.conf.write_text(
        DOVECOT_CONF.format(
            d=directory,
            imap=server.imap_port,
            imaps=server.imaps_port,
            lmtp=server.lmtp_port,
            mechanisms="plain login xoauth2 oauthbearer" if oauth2 else "plain login",
            # A token is not a password: keep XOAUTH2 logins away from the passwd-file ("none":
            # lookups without a login, as for LMTP and doveadm, still find the users there).
            passwd_file_mechanisms="  mechanisms = none plain login\n" if oauth2 else "",
            oauth2_passdb=DOVECOT_OAUTH2_PASSDB.format(d=directory) if oauth2 else "",
        )
    )
    server.start_process()
    return server


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# --- SMTP (aiosmtpd) ---------------------------------------------------------------------------


@dataclass
class Envelope:
    """One message an SMTP server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> Any:
        return message_from_bytes(self.data)


@dataclass
class RecordingHandler:
    """Records every message; optionally delivers it into Dovecot over LMTP, one per recipient."""

    deliver_to: Dovecot | None = None
    received: list[Envelope] = field(default_factory=list)
    #: Replies to give instead of accepting, one per message: "451 4.3.0 ...", "550 5.1.1 ...",
    #: or "DISCONNECT" (take the message, then drop the connection before answering).
    data_replies: list[str] = field(default_factory=list)
    rcpt_replies: list[str] = field(default_factory=list)
    mail_replies: list[str] = field(default_factory=list)
    #: Seconds to wait after taking a message before answering (a slow server).
    delay: float = 0.0
    #: Offer PIPELINING (RFC 2920) after EHLO, as Postfix, Exchange and Gmail do; aiosmtpd
    #: reads commands in order either way, but doesn't say so by itself.
    pipelining: bool = False

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: Any
    ) -> str:
        if self.mail_replies:
            return self.mail_replies.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if self.rcpt_replies:
            return self.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or envelope.content
        if self.data_replies:
            reply = self.data_replies.pop(0)
            if reply != "DISCONNECT":
                return reply
            self.received.append(Envelope(envelope.mail_from, list(envelope.rcpt_tos), data))
            server.transport.close()
            return "250 OK"
        self.received.append(Envelope(envelope.mail_from, list(envelope.rcpt_tos), data))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.deliver_to is not None:
            for rcpt in envelope.rcpt_tos:
                self.deliver_to.deliver(rcpt, data, sender=envelope.mail_from)
        return "250 OK"


#: RFC 4954 section 4: an AUTH command line may be up to 12288 octets (XOAUTH2 with a
#: Microsoft access token is about 2000).
AUTH_LINE_LIMIT = 12288
#: How a server answers a refused XOAUTH2 login (OAuth2Handler.failure_style).
XOAUTH2_FAILURES = {
    # Gmail: a 334 challenge with a base64 JSON error, then (after the client's empty line) 535.
    "google": (
        {"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"},
        "535 5.7.8 Username and Password not accepted. For more information, go to "
        "https://support.google.com/mail/?p=BadCredentials",
    ),
    # Microsoft 365: 535 at once.
    "microsoft": (None, "535 5.7.3 Authentication unsuccessful [AM0PR01CA0001.outlook.test]"),
}


@dataclass
class OAuth2Handler(RecordingHandler):
    """A RecordingHandler that also takes ``AUTH XOAUTH2``.

    The SASL string is ``user=USER^Aauth=Bearer TOKEN^A^A`` (^A: the byte 1); the login
    succeeds when ``oauth2(TOKEN)`` returns USER.
    """

    oauth2: Callable[[str], str | None] | None = None
    #: "google" or "microsoft": see XOAUTH2_FAILURES.
    failure_style: str = "google"
    #: The users who logged in with XOAUTH2, in order.
    xoauth2_logins: list[str] = field(default_factory=list)

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> Any:
        from aiosmtpd.smtp import MISSING, AuthResult, LoginPassword

        if len(args) == 1:  # no initial response: ask for it with an empty challenge
            blob = await server.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except ValueError:
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        fields = dict(
            part.partition(b"=")[::2] for part in blob.split(b"\x01") if part and b"=" in part
        )
        user = fields.get(b"user", b"").decode(errors="replace")
        scheme, _, token = fields.get(b"auth", b"").decode(errors="replace").partition(" ")
        if (
            user
            and scheme.lower() == "bearer"
            and self.oauth2 is not None
            and self.oauth2(token) == user
        ):
            self.xoauth2_logins.append(user)
            return AuthResult(success=True, auth_data=LoginPassword(user.encode(), token.encode()))
        error, reply = XOAUTH2_FAILURES[self.failure_style]
        if error is not None:
            answer = await server.challenge_auth(json.dumps(error, separators=(",", ":")))
            if answer is MISSING:  # the client said "*": challenge_auth has answered 501
                return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False, message=reply)


@dataclass
class SmtpServer:
    """A running aiosmtpd on 127.0.0.1 with STARTTLS and AUTH (users as for Dovecot)."""

    port: int
    handler: RecordingHandler
    controller: Any
    host: str = "127.0.0.1"

    @property
    def received(self) -> list[Envelope]:
        return self.handler.received

    def stop(self) -> None:
        if self.controller.server is not None:  # stopping twice is harmless
            self.controller.stop()


def start_smtp(
    cert: Path,
    key: Path,
    deliver_to: Dovecot | None = None,
    implicit_tls: bool = False,
    *,
    port: int | None = None,
    handler: RecordingHandler | None = None,
    oauth2: Callable[[str], str | None] | None = None,
) -> SmtpServer:
    """Start aiosmtpd; ``port`` and ``handler`` let a test bring a stopped server back.

    With ``oauth2`` (access token -> its user, or None) it also offers ``AUTH XOAUTH2``, through
    an ``OAuth2Handler``, and takes AUTH lines up to RFC 4954's 12288 octets.
    """
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

    class LongAuthSMTP(SMTP):
        line_length_limit = AUTH_LINE_LIMIT  # read by SMTP.__init__ for its stream's limit

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.line_length_limit = SMTP.line_length_limit  # message lines: as before
            self.command_size_limits = collections.defaultdict(
                lambda: SMTP.command_size_limit, {"AUTH": AUTH_LINE_LIMIT}
            )

    class LongAuthController(Controller):
        def factory(self) -> SMTP:
            return LongAuthSMTP(self.handler, **self.SMTP_kwargs)

    accounts = {USER.format(n=n): PASSWORD.format(n=n) for n in range(1, USERS + 1)}

    def authenticator(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and accounts.get(auth_data.login.decode()) == auth_data.password.decode()
        )
        return AuthResult(success=ok, handled=False)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    if oauth2 is not None:
        handler = handler or OAuth2Handler(deliver_to=deliver_to)
        if not isinstance(handler, OAuth2Handler):
            raise TypeError("an XOAUTH2 server needs an OAuth2Handler")
        handler.oauth2 = oauth2
    handler = handler or RecordingHandler(deliver_to=deliver_to)
    port = port or free_port()
    tls = {"ssl_context": context} if implicit_tls else {"tls_context": context}
    controller_class = LongAuthController if isinstance(handler, OAuth2Handler) else Controller
    controller = controller_class(
        handler,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_require_tls=not implicit_tls,
        **tls,
    )
    if implicit_tls:
        # The controller's own readiness probe speaks plain SMTP; wait for the port instead.
        controller.ready_timeout = 15.0
    controller.start()
    return SmtpServer(port, handler, controller)


# --- PostgreSQL -------------------------------------------------------------------------------


@dataclass
class Postgres:
    """A running PostgreSQL cluster on 127.0.0.1, trusting local connections."""

    directory: Path
    port: int
    bin_dir: Path
    _counter: int = 0

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import psycopg

        self._counter += 1
        name = f"test_{os.getpid()}_{self._counter}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def start(self) -> None:
        """Start the cluster (again) on its port."""
        self._pg_ctl(
            "-l",
            str(self.directory / "log"),
            "-o",
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            "start",
        )

    def halt(self) -> None:
        """Stop the server but keep its data, to ``start`` it again (``stop`` removes all)."""
        self._pg_ctl("-m", "fast", "stop")

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every session ends (and with it every advisory lock)."""
        # With the options of the first start (postmaster.opts).
        self._pg_ctl("-l", str(self.directory / "log"), "-m", "fast", "restart")

    def stop(self) -> None:
        self._pg_ctl("-m", "immediate", "stop", check=False)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        """``pg_ctl -w ARGS`` on the cluster, as the postgres user."""
        subprocess.run(
            [
                *("runuser", "-u", "postgres", "--", str(self.bin_dir / "pg_ctl")),
                *("-D", str(self.directory / "data"), "-w", *args),
            ],
            check=check,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # a started server inherits these: no pipe to wait on
            stderr=subprocess.DEVNULL,
        )


def start_postgres() -> Postgres:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise ServerMissing(f"PostgreSQL is not installed; {INSTALL_HINT}")
    bin_dir = Path(found[-1]).parent
    # Not under pytest's 0700 tmp tree: the postgres user must reach it.
    directory = Path(tempfile.mkdtemp(prefix="outreach-pg-"))
    directory.chmod(0o755)
    shutil.chown(directory, "postgres", "postgres")
    data = directory / "data"
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [
            *as_postgres,
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "--auth=trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ],
        check=True,
        capture_output=True,
    )
    server = Postgres(directory, free_port(), bin_dir)
    server.start()
    return server
