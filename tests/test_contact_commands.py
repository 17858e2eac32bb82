"""One contact at a time from the command line: contacts add, edit and remove (--forget)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.configs import edit_config
from tests.conftest import EXAMPLE_CONTACTS, Run

EMAIL = "tom.beaulieu@lincolnmiddle.example.org"


@pytest.fixture
def imported(cli: Callable[..., Run]) -> Callable[..., Run]:
    run = cli("contacts", "import", str(EXAMPLE_CONTACTS))
    assert run.exit_code == 0, run.output
    return cli


def shown(cli: Callable[..., Run], email: str) -> dict[str, Any]:
    run = cli("contacts", "show", email, "--json")
    assert run.exit_code == 0, run.output
    result: dict[str, Any] = json.loads(run.stdout)
    return result


class TestAdd:
    def test_add_with_a_segment_label_and_fields(self, cli: Callable[..., Run]) -> None:
        run = cli(
            "contacts",
            "add",
            "ruth@temple.example.org",
            "--segment",
            "Clergy",
            "--first-name",
            "Ruth",
            "--last-name",
            "Adler",
            "--title",
            "Rabbi",
            "--set",
            "tags=board",
            "--set",
            "years_in_practice=20",
        )
        assert run.exit_code == 0, run.output
        assert run.stdout.strip() == "added ruth@temple.example.org to clergy"
        ruth = shown(cli, "ruth@temple.example.org")
        assert (ruth["title"], ruth["segment"], ruth["tags"]) == ("Rabbi", "clergy", ["board"])
        assert ruth["custom"] == {"years_in_practice": "20"} and ruth["held_since"] is None

    def test_held_when_hold_new_is_on(self, cli: Callable[..., Run], config_file: Path) -> None:
        edit_config(config_file, {"sending.hold_new": True})
        run = cli("contacts", "add", "a@x.example.com", "--segment", "teacher")
        assert run.exit_code == 0 and "held for your review" in run.stdout
        assert shown(cli, "a@x.example.com")["held_since"]
        listed = cli("contacts", "list").stdout
        assert "held" in listed and "1 held for your review" in listed

    def test_unknown_segment_and_field_exit_2(self, cli: Callable[..., Run]) -> None:
        run = cli("contacts", "add", "a@x.example.com", "--segment", "rabbis")
        assert run.exit_code == 2 and "--segment: unknown segment 'rabbis'" in run.stderr
        run = cli(
            "contacts", "add", "a@x.example.com", "--segment", "clergy", "--set", "Last Name=x"
        )
        assert (
            run.exit_code == 2 and "--set unknown field 'Last Name': the fields are" in run.stderr
        )
        assert json.loads(cli("contacts", "list", "--json").stdout) == []

    def test_a_line_break_in_a_name_is_refused(self, cli: Callable[..., Run]) -> None:
        run = cli(
            "contacts", "add", "a@x.example.com", "--segment", "clergy", "--first-name", "A\nB"
        )
        assert run.exit_code == 2
        assert "--set first_name: contains a line break or NUL" in run.stderr


class TestEdit:
    def test_set_and_clear(self, imported: Callable[..., Run]) -> None:
        run = imported("contacts", "edit", EMAIL, "--set", "first_name=Thomas", "--set", "title=")
        assert run.exit_code == 0, run.output
        assert f"{EMAIL}: first_name: Tom -> Thomas" in run.stdout
        assert f"{EMAIL}: title: Mr. -> (empty)" in run.stdout
        tom = shown(imported, EMAIL)
        assert (tom["first_name"], tom["title"]) == ("Thomas", None)

    def test_unknown_contact_exits_1(self, imported: Callable[..., Run]) -> None:
        run = imported("contacts", "edit", "nobody@x.example.com", "--set", "title=Dr.")
        assert run.exit_code == 1 and "nobody@x.example.com" in run.stderr

    def test_unknown_field_exits_2(self, imported: Callable[..., Run]) -> None:
        run = imported("contacts", "edit", EMAIL, "--set", "last_nmae=B")
        assert run.exit_code == 2
        assert "unknown field 'last_nmae'; did you mean 'last_name'?" in run.stderr
        run = imported("contacts", "edit", EMAIL, "--set", "segment=pastors")
        assert run.exit_code == 2 and "unknown segment 'pastors'" in run.stderr


class TestRemove:
    def test_remove(self, imported: Callable[..., Run]) -> None:
        run = imported("contacts", "remove", EMAIL)
        assert run.exit_code == 0, run.output
        assert run.stdout.strip() == f"removed {EMAIL} with its history and 0 messages"
        assert imported("contacts", "show", EMAIL).exit_code == 1

    def test_remove_an_unsubscribed_contact_keeps_it_suppressed(
        self, imported: Callable[..., Run]
    ) -> None:
        assert imported("stage", "set", EMAIL, "unsubscribed").exit_code == 0
        run = imported("contacts", "remove", EMAIL)
        assert run.exit_code == 0 and "it stays suppressed" in run.stdout
        again = imported("contacts", "import", str(EXAMPLE_CONTACTS))
        assert "skipped 1 suppressed" in again.stdout

    def test_forget(self, imported: Callable[..., Run]) -> None:
        run = imported("contacts", "remove", EMAIL, "--forget")
        assert run.exit_code == 0, run.output
        assert run.stdout.startswith(f"erased {EMAIL}: the contact, its history, 0 messages")
        added = imported("contacts", "add", EMAIL, "--segment", "teacher")
        assert added.exit_code == 2 and "erased at its owner's request" in added.stderr

    def test_unknown_contact_exits_1(self, imported: Callable[..., Run]) -> None:
        run = imported("contacts", "remove", "nobody@x.example.com", "--forget")
        assert run.exit_code == 1 and "no contact with email 'nobody@x.example.com'" in run.stderr
