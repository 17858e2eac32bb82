"""Real address-book exports import as they are: Google Contacts and Outlook, in any encoding.

The files in ``tests/data/exports/`` are what the two export: Google's 2024 CSV (UTF-8, its
``Labels`` with `` ::: `` and system labels, multi-line addresses and notes, two addresses in
one cell) and Outlook's "Comma Separated Values" (Windows-1252, every cell quoted, a
multi-line street, filler such as ``Gender = Unspecified``), that file again as UTF-16
("Unicode") and as UTF-8 with a BOM.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.configs import edit_config
from tests.conftest import ROOT, Run

EXPORTS = ROOT / "tests" / "data" / "exports"
GOOGLE = EXPORTS / "google-contacts.csv"
OUTLOOK = EXPORTS / "outlook-windows-1252.csv"
GOOGLE_LABELS = {"School counselors": "teacher", "Primary care": "primary_care"}


def by_email(cli: Callable[..., Run]) -> dict[str, dict[str, Any]]:
    run = cli("contacts", "list", "--json")
    assert run.exit_code == 0, run.output
    return {c["email"]: c for c in json.loads(run.stdout)}


@pytest.fixture
def google_config(config_file: Path) -> Path:
    edit_config(
        config_file,
        add={"import.segment_column": "Labels", "import.segment_labels": GOOGLE_LABELS},
    )
    return config_file


class TestGoogleContacts:
    def test_dry_run_counts_each_segment_then_the_import_keeps_everything(
        self, cli: Callable[..., Run], google_config: Path
    ) -> None:
        dry = cli("contacts", "import", str(GOOGLE), "--dry-run")
        assert dry.exit_code == 0, dry.output
        assert "google-contacts.csv: 8 contacts read; would import 8" in dry.stdout
        for line in (
            "psychiatrist: 1 new (Psychiatrists)",
            "clergy: 2 new (Clergy)",
            "teacher: 1 new (School counselors and teachers)",
            "primary_care: 1 new",
            "pediatrician: 1 new",
            "family_law: 1 new",
            "hr_eap: 1 new",
            "dry run: nothing was changed",
        ):
            assert line in dry.stdout
        assert by_email(cli) == {}

        run = cli("contacts", "import", str(GOOGLE))
        assert run.exit_code == 0, run.output
        assert "imported 8" in run.stdout
        found = by_email(cli)
        alma = found["alma.reyes@northbay.example.com"]
        assert (alma["title"], alma["organization"], alma["segment"]) == (
            "Dr.",
            "North Bay Psychiatry",
            "psychiatrist",
        )
        assert (
            alma["custom"]["address_1_formatted"]
            == "120 Harbor St\nSuite 4\nPortland, ME 04101\nUS"
        )
        assert alma["custom"]["notes"] == (
            "Met at grand rounds in March.\nPrefers email; answers on Fridays."
        )
        assert alma["tags"] == []  # "* myContacts" is Google's, and "Psychiatrists" the segment
        assert "e_mail_1_label" not in alma["custom"] and "file_as" not in alma["custom"]
        assert found["rabbi.feldman@bethel.example.org"]["title"] == "Rabbi"
        assert found["mpark@harborfm.example.com"]["tags"] == ["Conference 2025"]
        assert found["sara@lindlaw.example.com"]["custom"]["other_emails"] == (
            "slind@lindlaw.example.com"
        )
        nameless = found["intake@baysidepeds.example.com"]
        assert (nameless["first_name"], nameless["segment"]) == (None, "pediatrician")

    def test_labels_that_name_no_segment_are_problems_with_their_line(
        self, cli: Callable[..., Run]
    ) -> None:
        """Without the [import.segment_labels] map, two of Google's labels name no segment;
        segments' own labels ("Psychiatrists") and names ("hr_eap") still do."""
        run = cli("contacts", "import", str(GOOGLE), "--segment-from", "Labels")
        assert run.exit_code == 2
        lines = run.stderr.strip().splitlines()
        # Line numbers are the file's: Alma's and Grace's rows span several lines.
        assert lines[0].startswith(
            "line 12, column 17 (Labels): no label names a segment ('School counselors')"
        )
        assert lines[1].startswith(
            "line 15, column 17 (Labels): no label names a segment ('Primary care', "
            "'Conference 2025')"
        )
        assert lines[-1] == "google-contacts.csv: 2 problem(s); nothing was imported"
        assert by_email(cli) == {}

    def test_segment_option_takes_the_rows_without_a_segment_label(
        self, cli: Callable[..., Run]
    ) -> None:
        run = cli(
            "contacts", "import", str(GOOGLE), "--segment-from", "Labels", "--segment", "Clergy"
        )
        assert run.exit_code == 0, run.output
        found = by_email(cli)
        assert found["tom.beaulieu@lincoln.example.org"]["segment"] == "clergy"
        assert found["alma.reyes@northbay.example.com"]["segment"] == "psychiatrist"

    def test_a_line_break_in_a_field_that_reaches_a_header_is_refused(
        self, cli: Callable[..., Run], google_config: Path, tmp_path: Path
    ) -> None:
        text = GOOGLE.read_text().replace("Lind Family Law", '"Lind Family Law\nBcc: x@x.example"')
        file = tmp_path / "google.csv"
        file.write_text(text)
        run = cli("contacts", "import", str(file))
        assert run.exit_code == 2
        assert (
            "line 17, column 11 (Organization Name): contains a line break or NUL; "
            "a field must be one line"
        ) in run.stderr
        assert by_email(cli) == {}

    def test_a_missing_segment_column_is_named(
        self, cli: Callable[..., Run], google_config: Path
    ) -> None:
        run = cli("contacts", "import", str(OUTLOOK))
        assert run.exit_code == 2
        assert "line 1: no column 'Labels' to read segments from" in run.stderr
        assert "Categories" in run.stderr  # the columns the file has


class TestOutlook:
    def test_windows_1252_is_detected_and_filler_is_dropped(self, cli: Callable[..., Run]) -> None:
        dry = cli("contacts", "import", str(OUTLOOK), "--segment-from", "Categories", "--dry-run")
        assert dry.exit_code == 0, dry.output
        assert "7 contacts read (read as Windows-1252); would import 7" in dry.stdout
        assert "clergy: 2 new (Clergy)" in dry.stdout

        assert (
            cli("contacts", "import", str(OUTLOOK), "--segment-from", "Categories").exit_code == 0
        )
        found = by_email(cli)
        renee = found["renee.cote@stmichel.example.com"]
        assert (renee["first_name"], renee["last_name"], renee["title"]) == ("Renée", "Côté", "Dr.")
        assert renee["custom"]["business_street"] == "1200 Main St.\nSuite 4"
        assert renee["custom"]["notes"] == (
            "Prefers fax for records.\nWe met at NAMI\u2019s walk \u2013 say hello."
        )
        for filler in (
            "gender",
            "private",
            "sensitivity",
            "priority",
            "birthday",
            "anniversary",
            "e_mail_type",
            "e_mail_display_name",
            "initials",
        ):
            assert filler not in renee["custom"], filler
        assert found["pkim@kidsclinic.example.com"]["custom"]["gender"] == "Female"
        nunez = found["jnunez@stmarys.example.org"]
        assert (nunez["last_name"], nunez["organization"], nunez["tags"]) == (
            "Núñez",
            "St. Mary\u2019s Parish",
            ["Referral partners"],
        )
        assert found["marc@duboisson.example.com"]["organization"] == "Dubois & Søn Law"
        assert found["ingrid.astrom@nordicworks.example.com"]["last_name"] == "Åström"

    @pytest.mark.parametrize(
        ("variant", "encoding"),
        [("outlook-unicode.csv", "UTF-16"), ("outlook-utf8-bom.csv", "UTF-8 with BOM")],
    )
    def test_unicode_and_bom_variants_import_the_same_contacts(
        self,
        cli: Callable[..., Run],
        config_file: Path,
        tmp_path: Path,
        variant: str,
        encoding: str,
    ) -> None:
        run = cli("contacts", "import", str(EXPORTS / variant), "--segment-from", "Categories")
        assert run.exit_code == 0, run.output
        assert f"(read as {encoding})" in run.stdout
        variant_contacts = by_email(cli)
        (config_file.parent / "var" / "outreach.sqlite3").unlink()
        assert (
            cli("contacts", "import", str(OUTLOOK), "--segment-from", "Categories").exit_code == 0
        )
        drop = ("created_at", "updated_at")
        assert {
            e: {k: v for k, v in c.items() if k not in drop} for e, c in by_email(cli).items()
        } == {e: {k: v for k, v in c.items() if k not in drop} for e, c in variant_contacts.items()}

    def test_a_forced_encoding_that_cant_read_the_file_names_the_line(
        self, cli: Callable[..., Run]
    ) -> None:
        run = cli(
            "contacts",
            "import",
            str(OUTLOOK),
            "--segment-from",
            "Categories",
            "--encoding",
            "utf-8",
        )
        assert run.exit_code == 2
        assert "line 2: byte 0xE9 can't be read as UTF-8" in run.stderr
        assert by_email(cli) == {}

    def test_the_configured_encoding_is_used(
        self, cli: Callable[..., Run], config_file: Path
    ) -> None:
        """[import] encoding forces one: here a wrong one, visibly (ñ is ń in Windows-1250)."""
        edit_config(
            config_file,
            add={"import.encoding": "windows-1250", "import.segment_column": "Categories"},
        )
        run = cli("contacts", "import", str(OUTLOOK))
        assert run.exit_code == 0 and "(read as Windows-1250)" in run.stdout
        assert by_email(cli)["jnunez@stmarys.example.org"]["last_name"] == "Núńez"

    def test_a_utf8_copy_with_one_cell_edited_in_windows_1252_names_that_cell(
        self, cli: Callable[..., Run], tmp_path: Path
    ) -> None:
        """The file saved as UTF-8, then one cell typed in Excel (Windows-1252): never a code
        page guessed for the whole file (Renée as "RenĂ©e"); that cell is named."""
        text = OUTLOOK.read_bytes().decode("cp1252")
        edited = tmp_path / "outlook-utf8-one-cell-edited.csv"
        edited.write_bytes(text.encode().replace("Núñez".encode(), "Núñez".encode("cp1252"), 1))
        run = cli("contacts", "import", str(edited), "--segment-from", "Categories")
        assert run.exit_code == 2
        assert "line 5, column 3 (Last Name): holds a byte that is not UTF-8 (0xFA)" in run.stderr
        assert "1 problem(s); nothing was imported" in run.stderr
        assert by_email(cli) == {}

    def test_an_unknown_encoding_is_refused(self, cli: Callable[..., Run]) -> None:
        run = cli("contacts", "import", str(OUTLOOK), "--encoding", "klingon")
        assert run.exit_code == 2 and "line 1: unknown encoding 'klingon'" in run.stderr


class TestSegmentLabels:
    def test_a_segments_label_works_in_the_segment_column_and_option(
        self, cli: Callable[..., Run], tmp_path: Path
    ) -> None:
        file = tmp_path / "mine.csv"
        file.write_text(
            "email,segment\na@x.example.com,Psychiatrists\nb@x.example.com,family-law attorneys\n"
            "c@x.example.com,\n"
        )
        run = cli("contacts", "import", str(file), "--segment", "HR and EAP staff")
        assert run.exit_code == 0, run.output
        assert {e: c["segment"] for e, c in by_email(cli).items()} == {
            "a@x.example.com": "psychiatrist",
            "b@x.example.com": "family_law",
            "c@x.example.com": "hr_eap",
        }
        listed = cli("contacts", "list", "--segment", "Psychiatrists", "--json")
        assert [c["email"] for c in json.loads(listed.stdout)] == ["a@x.example.com"]

    def test_a_mapped_label_must_name_a_segment(
        self, cli: Callable[..., Run], config_file: Path
    ) -> None:
        edit_config(config_file, add={"import.segment_labels": {"Rabbis": "rabbi"}})
        run = cli("contacts", "import", str(GOOGLE), "--segment-from", "Labels")
        assert run.exit_code == 2
        assert "import.segment_labels.'Rabbis': 'rabbi' is not a segment" in run.stderr

    def test_two_segments_in_one_rows_labels(self, cli: Callable[..., Run], tmp_path: Path) -> None:
        file = tmp_path / "labels.csv"
        file.write_text(
            "E-mail 1 - Value,Labels\nz@x.example.com,Psychiatrists ::: Clergy ::: * starred\n"
        )
        run = cli("contacts", "import", str(file), "--segment-from", "labels")
        assert run.exit_code == 2
        assert (
            "line 2, column 2 (Labels): the labels name 2 segments (psychiatrist from "
            "'Psychiatrists', clergy from 'Clergy'); keep one"
        ) in run.stderr

    def test_held_for_review_when_hold_new_is_on(
        self, cli: Callable[..., Run], google_config: Path
    ) -> None:
        edit_config(google_config, {"sending.hold_new": True})
        run = cli("contacts", "import", str(GOOGLE))
        assert run.exit_code == 0, run.output
        assert "8 wait for your review" in run.stdout
        assert all(c["held_since"] for c in by_email(cli).values())
        table = cli("contacts", "list").stdout
        assert "waiting" in table and "held" in table
