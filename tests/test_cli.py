"""The command line as a therapist uses it: import, list, show, export, stages, referrals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from outreach.store.database import Store
from tests.conftest import EXAMPLE_CONTACTS, ROOT, Run


@pytest.fixture
def imported(cli: Callable[..., Run]) -> Callable[..., Run]:
    run = cli("contacts", "import", str(EXAMPLE_CONTACTS))
    assert run.exit_code == 0, run.output
    return cli


class TestImport:
    def test_summary_by_segment(self, cli: Callable[..., Run]) -> None:
        run = cli("contacts", "import", str(EXAMPLE_CONTACTS))
        assert run.exit_code == 0, run.output
        assert "11 contacts read; imported 11" in run.stdout
        assert "psychiatrist: 2 new" in run.stdout

    def test_second_import_skips_and_counts(self, imported: Callable[..., Run]) -> None:
        run = imported("contacts", "import", str(EXAMPLE_CONTACTS))
        assert "skipped 11 already in the store (use --update to update them)" in run.stdout

    def test_problems_exit_2_and_import_nothing(
        self, cli: Callable[..., Run], tmp_path: Path
    ) -> None:
        bad = tmp_path / "bad.csv"
        bad.write_text(
            "email,segment\nok@x.example.com,teacher\nbroken,teacher\nb@x.example.com,pastor\n"
        )
        run = cli("contacts", "import", str(bad))
        assert run.exit_code == 2
        lines = run.stderr.strip().splitlines()
        assert lines[0].startswith("line 3, column 1 (email): 'broken' is not a valid email")
        assert lines[1].startswith("line 4, column 2 (segment): unknown segment 'pastor'")
        assert lines[-1] == "bad.csv: 2 problem(s); nothing was imported"
        assert "Traceback" not in run.output
        assert json.loads(cli("contacts", "list", "--json").stdout) == []

    def test_segment_option_for_files_without_one(
        self, cli: Callable[..., Run], tmp_path: Path
    ) -> None:
        file = tmp_path / "google.csv"
        file.write_text("First Name,E-mail 1 - Value\nRuth,ruth@x.example.com\n")
        run = cli("contacts", "import", str(file), "--segment", "clergy")
        assert run.exit_code == 0, run.output
        assert json.loads(cli("contacts", "list", "--json").stdout)[0]["segment"] == "clergy"

    def test_unknown_segment_option(self, cli: Callable[..., Run], tmp_path: Path) -> None:
        run = cli("contacts", "import", str(EXAMPLE_CONTACTS), "--segment", "pastors")
        assert run.exit_code == 2 and "--segment: unknown segment 'pastors'" in run.stderr

    def test_missing_file(self, cli: Callable[..., Run], tmp_path: Path) -> None:
        run = cli("contacts", "import", str(tmp_path / "nope.csv"))
        assert run.exit_code == 2 and "nope.csv" in run.output

    def test_dry_run(self, cli: Callable[..., Run]) -> None:
        run = cli("contacts", "import", str(EXAMPLE_CONTACTS), "--dry-run")
        assert "would import 11" in run.stdout and "nothing was changed" in run.stdout
        assert json.loads(cli("contacts", "list", "--json").stdout) == []


class TestListShow:
    def test_list_json_has_the_promised_keys(self, imported: Callable[..., Run]) -> None:
        rows = json.loads(imported("contacts", "list", "--json").stdout)
        assert len(rows) == 11
        for key in ("email", "first_name", "last_name", "organization", "segment", "stage"):
            assert key in rows[0]

    def test_list_filters(self, imported: Callable[..., Run]) -> None:
        rows = json.loads(imported("contacts", "list", "--segment", "teacher", "--json").stdout)
        assert {r["segment"] for r in rows} == {"teacher"} and len(rows) == 2

    def test_list_unknown_stage(self, imported: Callable[..., Run]) -> None:
        run = imported("contacts", "list", "--stage", "engagd")
        assert run.exit_code == 2 and "unknown stage 'engagd'" in run.stderr

    def test_list_table(self, imported: Callable[..., Run]) -> None:
        run = imported("contacts", "list")
        assert run.exit_code == 0 and "Psychiatrists" in run.stdout and "11 contacts" in run.stdout

    def test_show_unknown_contact(self, imported: Callable[..., Run]) -> None:
        run = imported("contacts", "show", "nobody@x.example.com")
        assert run.exit_code == 1 and "no contact with email 'nobody@x.example.com'" in run.stderr


class TestStagesReferrals:
    def test_stage_set_then_show(self, imported: Callable[..., Run]) -> None:
        email = "tom.beaulieu@lincolnmiddle.example.org"
        run = imported("stage", "set", email, "engaged", "--note", "met at open house")
        assert run.exit_code == 0 and "new -> engaged" in run.stdout
        shown = json.loads(imported("contacts", "show", email, "--json").stdout)
        assert shown["stage"] == "engaged"
        assert shown["stage_changes"][-1]["reason"] == "set by hand: met at open house"
        text = imported("contacts", "show", email).stdout
        assert "new -> engaged  set by hand: met at open house" in text

    def test_stage_set_unknown_stage(self, imported: Callable[..., Run]) -> None:
        run = imported("stage", "set", "tom.beaulieu@lincolnmiddle.example.org", "friend")
        assert run.exit_code == 2 and "unknown stage 'friend'" in run.stderr

    def test_referral(self, imported: Callable[..., Run]) -> None:
        email = "grace.okafor@stmarkschurch.example.org"
        run = imported("referrals", "add", email, "--date", "2026-03-01", "--note", "by phone")
        assert run.exit_code == 0 and "new -> referring" in run.stdout
        shown = json.loads(imported("contacts", "show", email, "--json").stdout)
        assert shown["referrals"] == [
            {
                "received_on": "2026-03-01",
                "note": "by phone",
                "recorded_at": shown["referrals"][0]["recorded_at"],
            }
        ]

    def test_referral_help_warns_about_client_details(self, cli: Callable[..., Run]) -> None:
        assert "Never write a client's name" in cli("referrals", "add", "--help").stdout

    def test_bad_date(self, imported: Callable[..., Run]) -> None:
        run = imported(
            "referrals", "add", "grace.okafor@stmarkschurch.example.org", "--date", "yesterday"
        )
        assert run.exit_code == 2


class TestExport:
    def test_export_to_file_reimports(
        self, imported: Callable[..., Run], tmp_path: Path, config_file: Path
    ) -> None:
        out = tmp_path / "out.csv"
        assert imported("contacts", "export", str(out)).exit_code == 0
        before = json.loads(imported("contacts", "list", "--json").stdout)
        (config_file.parent / "var" / "outreach.sqlite3").unlink()
        assert imported("contacts", "import", str(out)).exit_code == 0
        after = json.loads(imported("contacts", "list", "--json").stdout)
        drop = ("created_at", "updated_at")
        assert [{k: v for k, v in r.items() if k not in drop} for r in after] == [
            {k: v for k, v in r.items() if k not in drop} for r in before
        ]

    def test_export_to_stdout(self, imported: Callable[..., Run]) -> None:
        run = imported("contacts", "export")
        assert run.stdout.splitlines()[0].startswith("email,first_name,last_name")
        assert len(run.stdout.splitlines()) == 12

    def test_unwritable_output(self, imported: Callable[..., Run], tmp_path: Path) -> None:
        run = imported("contacts", "export", str(tmp_path / "missing-dir" / "x.csv"))
        assert run.exit_code == 2 and "Can't write" in run.stderr


class TestDb:
    def test_upgrade_reports_the_schema(self, cli: Callable[..., Run]) -> None:
        head = Store.head_revision()
        first = cli("db", "upgrade")
        assert first.exit_code == 0
        assert f"schema empty -> {head}" in first.stdout
        assert f"already at schema {head}" in cli("db", "upgrade").stdout

    def test_postgres_from_the_environment(
        self,
        cli: Callable[..., Run],
        monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest,
    ) -> None:
        url = request.getfixturevalue("postgres").create_database()
        monkeypatch.setenv("OUTREACH_STORAGE__URL", url)
        assert cli("contacts", "import", str(EXAMPLE_CONTACTS)).exit_code == 0
        assert len(json.loads(cli("contacts", "list", "--json").stdout)) == 11


def _commands(app: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for group in app.registered_groups:  # type: ignore[attr-defined]
        found += _commands(group.typer_instance, (*prefix, group.name))
    for command in app.registered_commands:  # type: ignore[attr-defined]
        name = command.name or command.callback.__name__.replace("_", "-")
        found.append((*prefix, name))
    return found


class TestDocumentation:
    def test_every_command_has_help_and_is_in_the_readme(self, cli: Callable[..., Run]) -> None:
        from outreach.cli import app

        readme = (ROOT / "README.md").read_text()
        commands = _commands(app)
        assert len(commands) >= 8
        for command in commands:
            run = cli(*command, "--help", config=None)
            assert run.exit_code == 0, command
            usage_and_text = run.stdout.split("Options")[0]
            assert len(usage_and_text.strip().splitlines()) >= 3, f"{command} has no help text"
            assert f"outreach {' '.join(command)}" in readme, f"{command} is not in README.md"

    def test_python_dash_m_works(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
        result = subprocess.run(
            [sys.executable, "-m", "outreach", "--version"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert result.returncode == 0 and result.stdout.startswith("outreach ")
