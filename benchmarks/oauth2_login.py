"""What an OAuth2 (XOAUTH2) login costs next to a password login on the same servers.

Starts a Dovecot whose oauth2 passdb checks tokens by introspection against a local OAuth2
server (tests/oauth2_server.py), and aiosmtpd taking both; then times, interleaved round by
round, outreach's own IMAP and SMTP logins (connect, TLS, log in, log out):
- password: PLAIN/LOGIN with the user's password;
- oauth2, token fresh: XOAUTH2 with the access token read from the token file;
- oauth2, with a refresh: the token file says the token expired, so each login first refreshes
  it at the token endpoint (what happens about once an hour).
Prints the median and the extra time over the password login.

Usage: python benchmarks/oauth2_login.py [ROUNDS]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pydantic import SecretStr  # noqa: E402

from outreach.config import Imap, OAuth2, Smtp  # noqa: E402
from outreach.mail.imap import close_imap, open_imap  # noqa: E402
from outreach.mail.smtp import SmtpSession  # noqa: E402
from outreach.signin.login import log_in  # noqa: E402
from outreach.signin.token_file import TokenFile  # noqa: E402
from outreach.signin.tokens import AccessTokens  # noqa: E402
from tests.mailstack import start_dovecot, start_smtp  # noqa: E402
from tests.oauth2_server import start_oauth2_server  # noqa: E402


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    plain = start_dovecot()  # only for its certificate
    cert, key = plain.cert, plain.directory / "key.pem"
    server = start_oauth2_server(cert, key)
    dovecot = start_dovecot(server.introspection_url, certificate=(cert, key))
    smtp_server = start_smtp(cert, key, oauth2=server.username_for)
    try:
        user, password = dovecot.user(1)
        oauth2 = OAuth2(
            provider="custom",
            client_id="benchmark",
            token_url=server.token_url,
            device_authorization_url=server.device_authorization_url,
            scopes=["mail"],
            ca_file=cert,
        )
        state = Path(tempfile.mkdtemp(prefix="oauth2-bench-"))
        file = TokenFile(state)
        server.auto_approve = user
        log_in(oauth2, user, file, say=lambda _text: None)
        tokens = AccessTokens(oauth2, user, file)

        def imap(auth: str) -> Imap:
            return Imap(
                host="127.0.0.1",
                port=dovecot.imaps_port,
                username=user,
                password=SecretStr(password),
                security="tls",
                ca_file=cert,
                auth=auth,  # type: ignore[arg-type]
            )

        def smtp(auth: str) -> Smtp:
            return Smtp(
                host="127.0.0.1",
                port=smtp_server.port,
                username=user,
                password=SecretStr(password),
                security="starttls",
                ca_file=cert,
                auth=auth,  # type: ignore[arg-type]
            )

        def imap_login(auth: str) -> Callable[[], None]:
            settings = imap(auth)
            return lambda: close_imap(open_imap(settings, tokens))

        def smtp_login(auth: str) -> Callable[[], None]:
            settings = smtp(auth)

            async def once() -> None:
                async with SmtpSession(settings, tokens) as session:
                    await session.connect()

            return lambda: asyncio.run(once())

        def expire_first(login: Callable[[], None]) -> Callable[[], None]:
            def run() -> None:
                sign_in = file.read(oauth2.provider, oauth2.client_id)
                assert sign_in is not None
                sign_in.expires_at = 0.0
                file.write(sign_in)
                login()

            return run

        cases = {
            "IMAP password": imap_login("password"),
            "IMAP oauth2, token fresh": imap_login("oauth2"),
            "IMAP oauth2, with a refresh": expire_first(imap_login("oauth2")),
            "SMTP password": smtp_login("password"),
            "SMTP oauth2, token fresh": smtp_login("oauth2"),
            "SMTP oauth2, with a refresh": expire_first(smtp_login("oauth2")),
        }
        for run in cases.values():  # warm-up: imports, first TLS handshakes
            run()
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(rounds):
            for name, run in cases.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        print(f"login time, median of {rounds} interleaved rounds (connect, TLS, log in, out)")
        for protocol in ("IMAP", "SMTP"):
            base = statistics.median(times[f"{protocol} password"])
            for name in (n for n in cases if n.startswith(protocol)):
                median = statistics.median(times[name])
                extra = "" if name.endswith("password") else f"  ({(median - base) * 1000:+.1f} ms)"
                print(f"  {name:<30} {median * 1000:7.1f} ms{extra}")
    finally:
        smtp_server.stop()
        server.stop()
        dovecot.stop()
        plain.stop()


if __name__ == "__main__":
    main()
