"""The config file: discovery, validation with key paths, overrides, secrets, and `config check`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, time
from pathlib import Path

import pytest

from outreach.config import load_config
from outreach.errors import ConfigError
from tests.configs import edit_config, replace_once
from tests.conftest import Run
from tests.test_init import SEGMENTS as STARTER_SEGMENTS


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


class TestExample:
    def test_the_shipped_example_is_valid(self, config_file: Path) -> None:
        settings = load_config(config_file)
        assert settings.practice.timezone == "America/New_York"
        assert list(settings.segments) == STARTER_SEGMENTS
        assert settings.segments["psychiatrist"].sequence[1].delay_business_days == 4
        assert settings.segments["psychiatrist"].profile["address_as"] == "Dr."
        assert "meeting" in settings.the_pipeline.stages

    def test_config_check_summarizes_a_valid_file(self, cli: Callable[..., Run]) -> None:
        run = cli("config", "check")
        assert run.exit_code == 0, run.output
        assert "valid" in run.stdout
        assert (
            "segments: 9 (psychiatrist, primary_care, pediatrician, teacher, clergy, ob_gyn, "
            "family_law, hr_eap, therapist), 27 sequence steps"
        ) in run.stdout


class TestProblems:
    def test_negative_delay_is_named_by_its_key_path(self, config_file: Path) -> None:
        edit_config(config_file, {"segments.clergy.sequence[1].delay_business_days": -1})
        assert problems_of(config_file) == [
            "segments.clergy.sequence[1].delay_business_days: must be >= 0"
        ]

    def test_every_problem_is_listed_on_its_own_line(
        self, config_file: Path, cli: Callable[..., Run]
    ) -> None:
        edit_config(
            config_file,
            {"smtp.security": "ssl", "practice.timezone": "Mars/Olympus", "smtp.timeout": -5},
        )
        run = cli("config", "check")
        assert run.exit_code == 2
        lines = run.stderr.strip().splitlines()
        assert "smtp.security: must be one of 'starttls', 'tls' or 'none' (got 'ssl')" in lines
        assert any(
            line.startswith("practice.timezone: 'Mars/Olympus' is not an IANA") for line in lines
        )
        assert "smtp.timeout: must be > 0" in lines
        assert "Traceback" not in run.output

    def test_unknown_key_is_an_error(self, config_file: Path) -> None:
        edit_config(config_file, add={"smtp.hots": "x"})
        assert problems_of(config_file) == ["smtp.hots: unknown key"]

    def test_unknown_section_is_an_error(self, config_file: Path) -> None:
        edit_config(config_file, add={"sendng": {"x": 1}})
        assert problems_of(config_file) == ["sendng: unknown key"]

    def test_misspelt_segment_key_suggests_the_right_one(self, config_file: Path) -> None:
        edit_config(config_file, rename={"segments.clergy.label": "labell"})
        assert problems_of(config_file) == [
            "segments.clergy.labell: unknown key; did you mean 'label'?"
        ]

    def test_profile_fields_must_be_text(self, config_file: Path) -> None:
        edit_config(config_file, {"segments.clergy.address_as": 3})
        assert problems_of(config_file) == [
            "segments.clergy.address_as: profile fields must be text"
        ]

    def test_segment_names_are_checked(self, config_file: Path) -> None:
        edit_config(config_file, rename={"segments.clergy": "Clergy Folk"})
        (problem,) = problems_of(config_file)
        assert problem.startswith("segments.Clergy Folk")

    def test_missing_required_key(self, config_file: Path) -> None:
        edit_config(config_file, remove=["practice.postal_address"])
        assert problems_of(config_file) == ["practice.postal_address: required key is missing"]

    def test_bad_sender_address(self, config_file: Path) -> None:
        edit_config(config_file, {"sender.from_address": "maya@@calmharbor"})
        (problem,) = problems_of(config_file)
        assert problem.startswith("sender.from_address: 'maya@@calmharbor' is not a valid email")

    def test_sending_rules_are_checked(self, config_file: Path) -> None:
        edit_config(
            config_file,
            {
                "sending.unsubscribe_url": "http://x.example.com/u",
                "sending.end_time": time(8, 0),
                "sending.days": ["mon", "funday"],
                "sending.holidays_country": "XX",
            },
        )
        problems = problems_of(config_file)
        assert (
            "sending.unsubscribe_url: 'http://x.example.com/u' must be an https:// URL" in problems
        )
        assert any(p.startswith("sending.days[1]: must be one of 'mon'") for p in problems)
        assert len(problems) == 2  # the window and holiday checks run once the fields are valid

    def test_window_and_holidays_are_checked(self, config_file: Path) -> None:
        edit_config(config_file, {"sending.end_time": time(8, 0), "sending.holidays_country": "XX"})
        (problem,) = problems_of(config_file)
        assert problem == "sending.end_time: 08:00:00 must be after start_time"

    def test_unknown_holiday_country(self, config_file: Path) -> None:
        edit_config(config_file, {"sending.holidays_country": "XX"})
        (problem,) = problems_of(config_file)
        assert problem.startswith("sending.holidays_country: ")

    def test_blackout_end_before_start(self, config_file: Path) -> None:
        edit_config(config_file, {"sending.blackouts[0].end": date(2026, 12, 1)})
        (problem,) = problems_of(config_file)
        assert problem == "sending.blackouts[0].end: 2026-12-01 is before start 2026-12-24"

    def test_extra_stage_after_unknown_stage(self, config_file: Path) -> None:
        edit_config(config_file, {"pipeline.extra_stages[0].after": "engagd"})
        assert problems_of(config_file) == [
            "pipeline.extra_stages[0].after: unknown stage 'engagd'"
        ]

    def test_invalid_toml_is_one_sentence(self, config_file: Path, cli: Callable[..., Run]) -> None:
        config_file.write_text(replace_once(config_file.read_text(), "[smtp]\n", "[smtp\n"))
        run = cli("config", "check")
        assert run.exit_code == 2
        assert run.stderr.count("\n") == 1
        assert "is not valid TOML" in run.stderr and "line" in run.stderr

    def test_missing_file(self, tmp_path: Path, cli: Callable[..., Run]) -> None:
        run = cli("config", "check", config=tmp_path / "nope.toml")
        assert run.exit_code == 2
        assert run.stderr.strip() == f"Config file {tmp_path / 'nope.toml'} does not exist."

    def test_not_utf8(self, config_file: Path) -> None:
        config_file.write_bytes(b'[practice]\nname = "Caf\xe9"\n')
        (problem,) = problems_of(config_file)
        assert "is not UTF-8 text (line 2)" in problem

    def test_unwritable_state_directory(
        self,
        config_file: Path,
        tmp_path: Path,
        cli: Callable[..., Run],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        monkeypatch.setenv("STATE_DIRECTORY", str(blocker / "state"))
        run = cli("config", "check")
        assert run.exit_code == 2
        assert run.stderr.startswith(f"The state directory {blocker / 'state'} is not writable")
        assert run.stderr.count("\n") == 1

    def test_plaintext_only_to_loopback(self, config_file: Path, cli: Callable[..., Run]) -> None:
        edit_config(config_file, {"smtp.security": "none"})
        run = cli("config", "check")
        assert run.exit_code == 2
        assert run.stderr.startswith("smtp.security: 'none' sends the password in the clear")


class TestDiscovery:
    def test_config_env_variable(
        self, config_file: Path, monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Run]
    ) -> None:
        monkeypatch.setenv("OUTREACH_CONFIG", str(config_file))
        assert cli("config", "check", config=None).exit_code == 0

    def test_option_beats_env_variable(
        self,
        config_file: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        cli: Callable[..., Run],
    ) -> None:
        monkeypatch.setenv("OUTREACH_CONFIG", str(tmp_path / "missing.toml"))
        assert cli("config", "check").exit_code == 0

    def test_config_folder_of_the_working_directory(
        self, config_file: Path, monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Run]
    ) -> None:
        monkeypatch.chdir(config_file.parent.parent)
        run = cli("config", "check", config=None)
        assert run.exit_code == 0
        assert str(config_file) in run.stdout

    def test_nothing_found_says_where_it_looked(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Run]
    ) -> None:
        (tmp_path / "empty").mkdir()
        monkeypatch.chdir(tmp_path / "empty")
        if Path("/etc/outreach/outreach.toml").exists():
            pytest.skip("this machine has /etc/outreach/outreach.toml")
        run = cli("config", "check", config=None)
        assert run.exit_code == 2
        assert "No config file found" in run.stderr and "/etc/outreach/outreach.toml" in run.stderr

    def test_relative_paths_are_relative_to_the_file(
        self, config_file: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        edit_config(
            config_file,
            {"storage.url": "sqlite:///data/o.db"},
            add={"smtp.ca_file": "certs/ca.pem"},
        )
        monkeypatch.chdir(tmp_path)
        settings = load_config(Path("config/outreach.toml"))
        assert settings.smtp.ca_file == config_file.parent / "certs" / "ca.pem"
        assert settings.database_url == f"sqlite:///{config_file.parent / 'data' / 'o.db'}"

    def test_default_database_in_state_directory(
        self, config_file: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        assert load_config(config_file).database_url == (
            f"sqlite:///{config_file.parent / 'var' / 'outreach.sqlite3'}"
        )
        monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
        assert load_config(config_file).database_url == (
            f"sqlite:///{tmp_path / 'state' / 'outreach.sqlite3'}"
        )


class TestOverrides:
    def test_environment_overrides_a_key(
        self, config_file: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("OUTREACH_SMTP__HOST", "mail.override.example")
        monkeypatch.setenv("OUTREACH_SMTP__PORT", "2525")
        settings = load_config(config_file)
        assert (settings.smtp.host, settings.smtp.port) == ("mail.override.example", 2525)
        assert settings.smtp.username == "maya@calmharbor.example.com"  # the rest is kept

    def test_environment_overrides_a_segment_key(
        self, config_file: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("OUTREACH_SEGMENTS__TEACHER__LABEL", "School staff")
        assert load_config(config_file).segments["teacher"].label == "School staff"

    def test_bad_override_is_named_by_its_key(
        self, config_file: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("OUTREACH_SMTP__PORT", "lots")
        assert problems_of(config_file) == ["smtp.port: must be a whole number"]


class TestSecrets:
    def test_password_in_the_file_is_refused(self, config_file: Path) -> None:
        edit_config(config_file, add={"smtp.password": "hunter2"})
        (problem,) = problems_of(config_file)
        assert problem.startswith("smtp.password: passwords don't belong in the config file")
        assert "hunter2" not in problem

    def test_passwords_from_systemd_credentials(
        self, config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        creds = tmp_path / "creds"
        creds.mkdir()
        (creds / "smtp_password").write_text("s3cret-smtp\n")
        (creds / "imap_password").write_text("s3cret-imap")
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
        settings = load_config(config_file)
        assert settings.smtp.password is not None and settings.imap.password is not None
        assert settings.smtp.password.get_secret_value() == "s3cret-smtp"
        assert settings.imap.password.get_secret_value() == "s3cret-imap"

    def test_environment_password_wins_over_credential(
        self, config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "smtp_password").write_text("from-file")
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
        monkeypatch.setenv("OUTREACH_SMTP__PASSWORD", "from-env")
        password = load_config(config_file).smtp.password
        assert password is not None and password.get_secret_value() == "from-env"

    def test_secrets_never_reach_the_output(
        self, config_file: Path, monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Run]
    ) -> None:
        monkeypatch.setenv("OUTREACH_SMTP__PASSWORD", "hunter2-smtp")
        monkeypatch.setenv("OUTREACH_IMAP__PASSWORD", "hunter2-imap")
        monkeypatch.setenv("OUTREACH_STORAGE__URL", "postgresql+psycopg://me:pgpass99@db/x")
        edit_config(config_file, {"smtp.timeout": -1})
        bad = cli("config", "check")
        edit_config(config_file, {"smtp.timeout": 30})
        good = cli("config", "check")
        assert good.exit_code == 0 and bad.exit_code == 2
        assert "password set" in good.stdout
        for run in (good, bad):
            for secret in ("hunter2-smtp", "hunter2-imap", "pgpass99"):
                assert secret not in run.output
        assert repr(load_config(config_file)).count("hunter2") == 0
