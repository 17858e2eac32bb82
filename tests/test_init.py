"""``outreach init`` and the starter kit it writes."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from outreach.cli import app
from outreach.config import load_config
from tests.conftest import ROOT, Run

SEGMENTS = [
    "psychiatrist",
    "primary_care",
    "pediatrician",
    "teacher",
    "clergy",
    "ob_gyn",
    "family_law",
    "hr_eap",
    "therapist",
]
KIT = ["intro", "follow_up_1", "follow_up_2", "thank_you", "nurture"]
FLAGS = [
    "--practice-name", "Blue Door Therapy",
    "--therapist", "Sam Rivera",
    "--ideal-client", "adults with panic disorder",
    "--method", "cognitive behavioral therapy",
    "--result", "fewer panic attacks and more confidence",
    "--postal-address", "1 Main Street, Springfield, IL 62701",
    "--sender", "sam@bluedoor.example.com",
    "--smtp-host", "smtp.bluedoor.example.com",
    "--imap-host", "imap.bluedoor.example.com",
    "--timezone", "America/Chicago",
    "--holidays-country", "US",
    "--holidays-subdivision", "IL",
]  # fmt: skip


def run(*args: str, stdin: str | None = None) -> Run:
    result = CliRunner().invoke(app, list(args), input=stdin, catch_exceptions=False)
    return Run(result.exit_code, result.stdout, result.stderr)


class TestInit:
    def test_flags_write_a_working_practice_folder(
        self, tmp_path: Path, cli: Callable[..., Run]
    ) -> None:
        folder = tmp_path / "practice"
        done = run("init", str(folder), "--non-interactive", *FLAGS)
        assert done.exit_code == 0, done.output
        config = folder / "config" / "outreach.toml"
        data = tomllib.loads(config.read_text())
        assert data["practice"]["name"] == "Blue Door Therapy"
        assert data["practice"]["ideal_client"] == "adults with panic disorder"
        assert data["practice"]["phone"] == ""  # the example's own values are not kept
        assert data["sender"]["from_address"] == "sam@bluedoor.example.com"
        assert data["sender"]["message_id_domain"] == "bluedoor.example.com"
        assert data["smtp"]["host"] == "smtp.bluedoor.example.com"
        assert data["imap"]["username"] == "sam@bluedoor.example.com"
        assert "# the practice, as it signs its emails" in config.read_text()
        assert data["sending"]["hold_new"] is True  # imported contacts wait for approval
        assert data["sending"]["holidays_country"] == "US"
        assert data["sending"]["holidays_subdivision"] == "IL"
        assert list(load_config(config).segments) == SEGMENTS
        for segment in SEGMENTS:
            for name in KIT:
                assert (folder / "templates" / segment / f"{name}.txt.j2").is_file()
        assert cli("contacts", "import", str(folder / "contacts.csv"), config=config).exit_code == 0
        checked = cli("templates", "check", config=config)
        assert checked.exit_code == 0, checked.output
        shown = cli("preview", "ben.adler@quietrivertherapy.example.com", config=config)
        assert "Blue Door Therapy" in shown.stdout
        assert "1 Main Street, Springfield, IL 62701" in shown.stdout

    def test_existing_files_are_never_overwritten_without_force(self, tmp_path: Path) -> None:
        assert run("init", str(tmp_path), "--non-interactive", *FLAGS).exit_code == 0
        config = tmp_path / "config" / "outreach.toml"
        config.write_text("# my own edits\n")
        again = run("init", str(tmp_path), "--non-interactive", *FLAGS)
        assert again.exit_code == 2
        assert "file(s) would be overwritten; nothing was written" in again.stderr
        assert "use --force" in again.stderr
        assert config.read_text() == "# my own edits\n"
        forced = run("init", str(tmp_path), "--non-interactive", "--force", *FLAGS)
        assert forced.exit_code == 0
        assert "Blue Door Therapy" in config.read_text()

    def test_a_non_empty_folder_without_our_files_is_fine(self, tmp_path: Path) -> None:
        (tmp_path / "notes.txt").write_text("mine")
        assert run("init", str(tmp_path), "--non-interactive", *FLAGS).exit_code == 0
        assert (tmp_path / "notes.txt").read_text() == "mine"

    def test_missing_and_invalid_answers_are_named_by_flag(self, tmp_path: Path) -> None:
        flags = FLAGS[:]
        flags[flags.index("--sender") + 1] = "sam at bluedoor"
        flags[flags.index("--timezone") + 1] = "Mars/Olympus"
        bad = run("init", str(tmp_path), "--non-interactive", *flags[2:])
        assert bad.exit_code == 2
        lines = bad.stderr.splitlines()
        assert lines[0].startswith("--practice-name: required with --non-interactive")
        assert any(
            line.startswith("--sender: 'sam at bluedoor' is not a valid email") for line in lines
        )
        assert (
            "--timezone: 'Mars/Olympus' is not an IANA time zone (e.g. 'America/New_York')" in lines
        )
        assert not (tmp_path / "config").exists()

    def test_prompts_ask_again_after_an_invalid_address(self, tmp_path: Path) -> None:
        answers = [
            "Blue Door Therapy", "Sam Rivera", "adults with panic disorder", "CBT",
            "fewer panic attacks", "1 Main Street", "not-an-address", "sam@bluedoor.example.com",
            "",  # the provider: "custom" (the default for a practice's own domain)
            "smtp.bluedoor.example.com", "imap.bluedoor.example.com", "",
            "",  # the country: US
            "XX", "wi",  # no default state: asked until it is one
            "",  # the segments' wording: as proposed
        ]  # fmt: skip
        done = run("init", str(tmp_path), stdin="\n".join(answers) + "\n")
        assert done.exit_code == 0, done.output
        assert "is not a valid email address" in done.stderr
        assert "'XX' is not a state or province of US" in done.stderr
        assert "[psychiatrist]" in done.stdout  # the proposals are shown before the choice
        data = tomllib.loads((tmp_path / "config" / "outreach.toml").read_text())
        assert data["sender"]["from_address"] == "sam@bluedoor.example.com"
        assert data["practice"]["timezone"] == "America/New_York"  # the default
        assert data["sending"]["holidays_subdivision"] == "WI"
        assert data["segments"]["teacher"]["client_gains"].startswith("fewer panic attacks, ")

    def test_a_wisconsin_practice_never_gets_the_examples_state(self, tmp_path: Path) -> None:
        flags = FLAGS[:]
        flags[flags.index("--holidays-subdivision") + 1] = "WI"
        assert run("init", str(tmp_path), "--non-interactive", *flags).exit_code == 0
        text = (tmp_path / "config" / "outreach.toml").read_text()
        assert 'holidays_subdivision = "WI"' in text and '"ME"' not in text

    def test_without_a_state_only_national_holidays_are_written(self, tmp_path: Path) -> None:
        flags = FLAGS[: FLAGS.index("--holidays-subdivision")]
        assert run("init", str(tmp_path), "--non-interactive", *flags).exit_code == 0
        data = tomllib.loads((tmp_path / "config" / "outreach.toml").read_text())
        assert data["sending"]["holidays_subdivision"] == ""

    def test_a_bad_country_or_state_is_named_by_its_flag(self, tmp_path: Path) -> None:
        flags = FLAGS[:]
        flags[flags.index("--holidays-country") + 1] = "Narnia"
        flags[flags.index("--holidays-subdivision") + 1] = "ZZ"
        bad = run("init", str(tmp_path), "--non-interactive", *flags)
        assert bad.exit_code == 2
        assert "--holidays-country: 'Narnia' is not a country code" in bad.stderr
        assert not (tmp_path / "config").exists()
        flags[flags.index("--holidays-country") + 1] = "CA"
        bad = run("init", str(tmp_path), "--non-interactive", *flags)
        assert "--holidays-subdivision: 'ZZ' is not a state or province of CA" in bad.stderr

    def test_proposed_profiles_are_phrased_around_the_answers(self, tmp_path: Path) -> None:
        assert run("init", str(tmp_path), "--non-interactive", *FLAGS).exit_code == 0
        settings = load_config(tmp_path / "config" / "outreach.toml")
        for name, segment in settings.segments.items():
            assert "fewer panic attacks and more confidence" in segment.profile["client_gains"]
            assert "anxiety" not in " ".join(segment.profile.values()), name

    def test_todo_profiles_are_refused_until_written(
        self, tmp_path: Path, cli: Callable[..., Run]
    ) -> None:
        folder = tmp_path / "practice"
        made = run("init", str(folder), "--non-interactive", "--segment-profiles", "todo", *FLAGS)
        assert made.exit_code == 0, made.output
        config = folder / "config" / "outreach.toml"
        checked = cli("templates", "check", config=config)
        assert checked.exit_code == 2
        assert "segments.psychiatrist.needs: still 'TODO: " in checked.stderr
        assert "the message still says TODO" not in checked.stderr  # once, by its key
        assert "nothing is sent while a TODO is left" in checked.stderr

    def test_profiles_can_be_edited_at_the_prompt(self, tmp_path: Path) -> None:
        answers = [
            "Blue Door Therapy", "Sam Rivera", "adults with panic disorder", "CBT",
            "fewer panic attacks", "1 Main Street", "sam@bluedoor.example.com", "",
            "smtp.bluedoor.example.com", "imap.bluedoor.example.com", "", "", "WI",
            "edit",
            "a therapist who answers the phone",  # psychiatrist.needs; the rest as proposed
        ]  # fmt: skip
        done = run("init", str(tmp_path), stdin="\n".join(answers) + "\n" * 40)
        assert done.exit_code == 0, done.output
        data = tomllib.loads((tmp_path / "config" / "outreach.toml").read_text())
        assert data["segments"]["psychiatrist"]["needs"] == "a therapist who answers the phone"
        assert data["segments"]["clergy"]["client_gains"].startswith("fewer panic attacks, ")

    def test_a_file_where_the_folder_should_be_is_one_clear_line(self, tmp_path: Path) -> None:
        (tmp_path / "taken").write_text("a file")
        bad = run("init", str(tmp_path / "taken"), "--non-interactive", *FLAGS)
        assert bad.exit_code == 2
        assert "can't write there" in bad.stderr


class TestStarterKit:
    """The shipped kit follows the referral method for nine kinds of source."""

    def test_every_segment_has_a_profile_a_full_sequence_and_check_ins(self) -> None:
        settings = load_config(ROOT / "config" / "outreach.example.toml")
        assert list(settings.segments) == SEGMENTS
        for name, segment in settings.segments.items():
            for field in ("needs", "gains", "client_gains", "offer"):
                assert segment.profile.get(field), (name, field)
            assert [s.template for s in segment.sequence] == KIT[:3], name
            assert all(s.thread for s in segment.sequence[1:]), name
            assert segment.nurture_every_days > 0, name
        thanks = [r for r in settings.rules if r.on == "referral"]
        assert thanks and thanks[0].then.reply_with == "thank_you"

    @pytest.mark.parametrize("segment", SEGMENTS)
    def test_each_intro_carries_the_four_parts_of_the_method(self, segment: str) -> None:
        """Expertise with the shared ideal client, what this source needs, the main result
        for the client and the source, and an offer to follow through."""
        intro = (ROOT / "templates" / segment / "intro.txt.j2").read_text()
        assert intro.startswith("Subject: ")
        who = (ROOT / "templates" / "_partials" / "introduction.txt.j2").read_text()
        assert "{{ practice.ideal_client }}" in who and "{{ practice.method }}" in who
        for part in (
            "{{ greeting }}",
            '{% include "_partials/introduction.txt.j2" %}',
            "{{ segment.needs }}",
            "{{ segment.client_gains }}",
            "{{ segment.gains }}",
            "{{ segment.offer }}",
            '{% include "_partials/footer.txt.j2" %}',
        ):
            assert part in intro, (segment, part)
        for follow_up in ("follow_up_1", "follow_up_2"):
            text = (ROOT / "templates" / segment / f"{follow_up}.txt.j2").read_text()
            assert text.startswith("\n"), "a threaded follow-up has no Subject of its own"
        for name in KIT:
            text = (ROOT / "templates" / segment / f"{name}.txt.j2").read_text()
            assert len(text.split()) < 200, (segment, name, "short and personal")
            assert "client's name" not in text.lower()
