"""Shared fixtures: real servers on 127.0.0.1, a store on each backend, a config, the CLI."""

from __future__ import annotations

import gc
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from typer.testing import CliRunner

from outreach.cli import app
from outreach.store.database import Store, open_store
from tests.configs import edit_config
from tests.mailstack import (
    Dovecot,
    Postgres,
    ServerMissing,
    SmtpServer,
    start_dovecot,
    start_postgres,
    start_smtp,
)
from tests.oauth2_server import OAuth2Server, start_oauth2_server

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "config" / "outreach.example.toml"
EXAMPLE_CONTACTS = ROOT / "config" / "contacts.example.csv"
T = TypeVar("T")
IN_CI = os.environ.get("CI", "").lower() == "true"
# A sending policy that is always open and never paces (OUTREACH_<key> values).
RELAXED_SENDING = {
    "SENDING__DAYS": '["mon","tue","wed","thu","fri","sat","sun"]',
    "SENDING__START_TIME": "00:00",
    "SENDING__END_TIME": "23:59:59",
    "SENDING__MIN_GAP_SECONDS": "0",
    "SENDING__JITTER_SECONDS": "0",
    "SENDING__MAX_PER_HOUR": "0",
    "SENDING__MAX_PER_DAY": "0",
    "SENDING__PER_ORGANIZATION_PER_DAY": "0",
    "SENDING__HOLIDAYS_COUNTRY": "",
    "SENDING__BLACKOUTS": "[]",
}


def _require(start: Callable[[], T]) -> T:
    """Start a server; a missing one skips locally and fails in CI (CI=true)."""
    try:
        return start()
    except ServerMissing as exc:
        if IN_CI:
            pytest.fail(f"{exc} (CI=true: a missing server is a failure, not a skip)")
        pytest.skip(str(exc))


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's own outreach settings."""
    for name in list(os.environ):
        if name.startswith("OUTREACH_") or name in ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect after each test, so a leaked socket is reported against the test that leaked it."""
    yield
    gc.collect()


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    server = _require(start_dovecot)
    yield server
    server.stop()


@pytest.fixture
def smtp_server(dovecot: Dovecot) -> Iterator[SmtpServer]:
    """aiosmtpd with STARTTLS and AUTH, delivering into Dovecot over LMTP."""
    server = start_smtp(dovecot.cert, dovecot.directory / "key.pem", deliver_to=dovecot)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def oauth2_server(dovecot: Dovecot) -> Iterator[OAuth2Server]:
    """A local OAuth2 authorization server (tests/oauth2_server.py) on HTTPS.

    It serves the ``dovecot`` fixture's certificate: trust ``oauth2_server.ca_file`` (the same
    file as ``dovecot.cert``). Tests that change ``access_lifetime``, ``device_code_lifetime`` or
    ``auto_approve`` put them back.
    """
    server = start_oauth2_server(dovecot.cert, dovecot.directory / "key.pem")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def oauth2_dovecot(dovecot: Dovecot, oauth2_server: OAuth2Server) -> Iterator[Dovecot]:
    """A second Dovecot that also takes XOAUTH2 and OAUTHBEARER, checking tokens with
    ``oauth2_server``'s introspection; PLAIN and LOGIN work as on ``dovecot``. Its certificate
    is the same as ``dovecot``'s and ``oauth2_server``'s."""
    server = _require(
        lambda: start_dovecot(
            oauth2_server.introspection_url,
            certificate=(dovecot.cert, dovecot.directory / "key.pem"),
        )
    )
    yield server
    server.stop()


@pytest.fixture
def oauth2_smtp(oauth2_dovecot: Dovecot, oauth2_server: OAuth2Server) -> Iterator[SmtpServer]:
    """aiosmtpd with STARTTLS and AUTH (passwords, and XOAUTH2 with ``oauth2_server``'s access
    tokens), delivering into ``oauth2_dovecot``. Its handler is a ``tests.mailstack.OAuth2Handler``
    (``xoauth2_logins``, ``failure_style``)."""
    server = start_smtp(
        oauth2_dovecot.cert,
        oauth2_dovecot.directory / "key.pem",
        deliver_to=oauth2_dovecot,
        oauth2=oauth2_server.username_for,
    )
    yield server
    server.stop()


@pytest.fixture
def without_ca_bundle_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE: requests lets them override a Session's
    ``verify`` (so msal's ``verify=`` too), and a test CA passed that way would be ignored."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    server = _require(start_postgres)
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new empty database on each backend the store supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}"
    server: Postgres = request.getfixturevalue("postgres")
    return server.create_database()


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = open_store(database_url)
    yield opened
    opened.close()


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """The shipped example config, copied to a fresh folder."""
    path = tmp_path / "config" / "outreach.toml"
    path.parent.mkdir()
    shutil.copy(EXAMPLE_CONFIG, path)
    return path


def without_rules(config_text: str) -> str:
    """The example config without its [[rules]] tables (they come last in the file)."""
    assert "\n[[rules]]" in config_text, "the config has no [[rules]] tables to take out"
    return config_text.split("\n[[rules]]", maxsplit=1)[0] + "\n"


@dataclass
class Run:
    """What one CLI invocation printed and returned."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def cli(config_file: Path) -> Callable[..., Run]:
    """Run ``outreach --config <the test's config> ARGS...`` in-process."""
    runner = CliRunner()

    def run(*args: str, config: Path | None = config_file) -> Run:
        argv = [*(["--config", str(config)] if config else []), *args]
        result = runner.invoke(app, argv, catch_exceptions=False)
        return Run(result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture
def smtp_sink(dovecot: Dovecot) -> Iterator[SmtpServer]:
    server = start_smtp(dovecot.cert, dovecot.directory / "key.pem")
    yield server
    server.stop()


@pytest.fixture
def outbound_config(
    config_file: Path, dovecot: Dovecot, smtp_sink: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The example config on the test servers, with a relaxed policy: always open, no pacing."""
    user, password = dovecot.user(3)
    dovecot.empty(user)
    edit_config(
        config_file,
        {
            "smtp.host": "127.0.0.1",
            "smtp.port": smtp_sink.port,
            "smtp.username": user,
            "imap.host": "127.0.0.1",
            "imap.port": dovecot.imaps_port,
            "imap.username": user,
            "templates.dir": str(ROOT / "templates"),
        },
        add={"smtp.ca_file": str(dovecot.cert), "imap.ca_file": str(dovecot.cert)},
        remove=["rules"],  # tests of built-in effects add the rules they need
    )
    for key, value in {
        "SMTP__PASSWORD": password,
        "IMAP__PASSWORD": password,
        **RELAXED_SENDING,
        "SEGMENTS__TEACHER__BLACKOUTS": "[]",
    }.items():
        monkeypatch.setenv(f"OUTREACH_{key}", value)
    return config_file
