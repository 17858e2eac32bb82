"""Input that used to end in a traceback: each now gets one line naming what is wrong, an exit
code, and loses nothing."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from outreach.config import load_config
from outreach.runtime.parts import build_parts
from outreach.services.contacts import import_contacts
from outreach.store.database import open_store
from tests.conftest import ROOT, Run
from tests.daemon_harness import received_counts
from tests.mailstack import SmtpServer

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def no_traceback(run: Run) -> None:
    assert "Traceback" not in run.output, run.output


class TestTemplates:
    @pytest.mark.parametrize(
        ("expression", "said"),
        [
            ("{% for i in range(10**7) %}x{% endfor %}", "Range too big"),
            ("{{ '-' * 10**9 }}", "repeating makes 1,000,000,000 items (at most 100,000)"),
            ("{{ 1 / 0 }}", "ZeroDivisionError: division by zero"),
            ("{{ 'a' + 1 }}", "TypeError: can only concatenate str"),
        ],
    )
    def test_an_expression_that_fails_is_a_template_problem_with_its_line(
        self,
        outbound_config: Path,
        cli: Callable[..., Run],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        expression: str,
        said: str,
    ) -> None:
        templates = tmp_path / "templates"
        shutil.copytree(ROOT / "templates", templates)
        monkeypatch.setenv("OUTREACH_TEMPLATES__DIR", str(templates))
        (templates / "clergy" / "intro.txt.j2").write_text(
            "Subject: Hi\n\n" + expression + "\n{% include '_partials/footer.txt.j2' %}\n"
        )
        run = cli("templates", "check")
        no_traceback(run)
        assert run.exit_code == 2
        assert "clergy/intro.txt.j2, line 3: " in run.stderr and said in run.stderr


class TestOutbox:
    @pytest.mark.parametrize("outbox_id", ["99999999999999999999999", "0", "-1"])
    def test_resolving_an_id_no_row_can_have_says_so(
        self, outbound_config: Path, cli: Callable[..., Run], outbox_id: str
    ) -> None:
        run = cli("outbox", "resolve", "--sent", "--", outbox_id)
        no_traceback(run)
        assert run.exit_code == 2
        assert f"no outbox row {outbox_id}" in run.stderr


class TestDiskFull:
    def test_a_full_database_stops_the_pass_with_one_problem_and_loses_nothing(
        self, outbound_config: Path, smtp_sink: SmtpServer, tmp_path: Path
    ) -> None:
        """SQLite's own SQLITE_FULL (a page cap on the connection), mid-pass."""
        settings = load_config(outbound_config)
        store = open_store(settings.database_url)
        try:
            csv = "email,first_name,segment\n" + "".join(
                f"p{i}@org{i}.example.com,P{i},psychiatrist\n" for i in range(40)
            )
            now = datetime(2027, 3, 1, 15, 0, tzinfo=UTC)
            import_contacts(
                store,
                settings.the_pipeline,
                list(settings.segments),
                csv.encode(),
                source="c.csv",
                now=now,
            )
            with store.engine.connect() as connection:
                pages = int(connection.execute(text("PRAGMA page_count")).scalar_one())

            @event.listens_for(store.engine, "connect")
            def _cap(dbapi_connection: Any, _record: Any) -> None:
                # Room for a few sends' ledger rows, not for forty.
                dbapi_connection.execute(f"PRAGMA max_page_count = {pages + 3}")

            store.engine.dispose()  # new connections get the cap
            dispatcher = build_parts(settings, store).dispatcher
            report = asyncio.run(dispatcher.run_pass(now + _hours(1)))
            assert len(report.problems) == 1, report.problems
            assert "database or disk is full" in report.problems[0]
            sent_before = received_counts(smtp_sink.received)
            assert len(sent_before) < 40

            event.remove(store.engine, "connect", _cap)
            store.engine.dispose()
            again = asyncio.run(dispatcher.run_pass(now + _hours(2)))
            assert again.problems == []
            counts = received_counts(smtp_sink.received)
            # Nothing lost and nothing twice: every source got its intro once, or is `unknown`
            # (sent right before the disk filled, its record lost with the write).
            unknown = {line.email for line in again.unknown}
            assert all(n == 1 for n in counts.values())
            assert set(counts) | unknown == {f"p{i}@org{i}.example.com" for i in range(40)}
        finally:
            store.close()


def _hours(n: int) -> Any:
    from datetime import timedelta

    return timedelta(hours=n)


class TestTimesAndVariables:
    @pytest.mark.parametrize(
        ("args", "value"),
        [
            (("plan",), "0001-01-01T00:00:00+14:00"),
            (("plan",), "9999-12-31T23:59:59-12:00"),
            (("plan",), "9999-12-30T10:00:00"),
            (("preview", "x@y.example.com"), "0001-01-01T00:00:00+14:00"),
        ],
    )
    def test_a_now_out_of_range_is_named(
        self, cli: Callable[..., Run], args: tuple[str, ...], value: str
    ) -> None:
        run = cli(*args, "--now", value)
        no_traceback(run)
        assert run.exit_code == 2
        assert f"--now: {value!r} must be between the years 1970 and 9000" in run.stderr

    def test_a_list_variable_that_is_not_json_is_named(
        self, cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("OUTREACH_IMAP__FOLDERS", "not json")
        monkeypatch.setenv("OUTREACH_IMAP__HOST", "imap.example.com")  # fine: not named
        run = cli("config", "check")
        no_traceback(run)
        assert run.exit_code == 2
        assert "$OUTREACH_IMAP__FOLDERS: can't be read" in run.stderr
        assert "OUTREACH_IMAP__HOST" not in run.stderr

    def test_an_unknown_outreach_variable_is_an_error_like_an_unknown_key(
        self, cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("OUTREACH_BOGUS__X", "1")
        run = cli("config", "check")
        assert run.exit_code == 2
        assert "$OUTREACH_BOGUS__X: no such setting" in run.stderr


class TestNumbers:
    @pytest.mark.parametrize(
        ("variable", "value", "said"),
        [
            (
                "SENDING__MIN_GAP_SECONDS",
                "inf",
                "sending.min_gap_seconds: Input should be a finite",
            ),
            ("SENDING__MIN_GAP_SECONDS", "1e300", "sending.min_gap_seconds: must be <= 86400"),
            ("SENDING__JITTER_SECONDS", "1e20", "sending.jitter_seconds: must be <= 86400"),
            ("SENDING__MAX_PER_DAY", "99999999999999999999", "sending.max_per_day: must be <="),
            ("STORAGE__URL", "garbage://x", "storage.url: 'garbage' is not a database"),
        ],
    )
    def test_config_check_refuses_what_would_crash_later(
        self,
        cli: Callable[..., Run],
        monkeypatch: pytest.MonkeyPatch,
        variable: str,
        value: str,
        said: str,
    ) -> None:
        monkeypatch.setenv(f"OUTREACH_{variable}", value)
        run = cli("config", "check")
        no_traceback(run)
        assert run.exit_code == 2
        assert said in run.stderr


def test_an_unprocessable_message_is_shown_in_status_and_the_report(
    config_file: Path, cli: Callable[..., Run], tmp_path: Path
) -> None:
    from outreach.store.models import InboundEventRow

    (tmp_path / "c.csv").write_text("email,first_name,segment\nalma@nb.example.com,Alma,clergy\n")
    assert cli("contacts", "import", str(tmp_path / "c.csv")).exit_code == 0
    store = open_store(load_config(config_file).database_url)
    try:
        with store.session() as session:
            session.add(
                InboundEventRow(
                    message_key="<odd@elsewhere.example>",
                    folder="INBOX",
                    kind="unprocessable",
                    received_at=datetime.now(UTC),
                    detail={"error": "OverflowError"},
                    effect="unprocessable (OverflowError): recorded, no effect",
                )
            )
    finally:
        store.close()
    status = cli("status")
    assert "1 message(s) this week outreach could not handle" in status.stdout
    report = cli("report")
    assert "<odd@elsewhere.example>" in report.stdout
    assert "could not handle it (OverflowError)" in report.stdout
