"""The local Maildir inbox source: read-only, each message once, clear errors."""

from __future__ import annotations

import mailbox
from datetime import UTC, datetime
from pathlib import Path

import pytest

from outreach.config import load_config
from outreach.errors import ConfigError
from outreach.mail.maildir import MaildirInbox
from outreach.runtime.parts import build_parts
from outreach.services.contacts import import_contacts, show_contact
from outreach.store.database import open_store
from tests.conftest import without_rules

NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


def test_replies_in_a_maildir_take_effect_once_and_nothing_moves(
    config_file: Path, tmp_path: Path
) -> None:
    config_file.write_text(without_rules(config_file.read_text()))
    settings = load_config(config_file)
    store = open_store(settings.database_url)
    try:
        import_contacts(
            store,
            settings.the_pipeline,
            list(settings.segments),
            b"email,first_name,segment\nalma@nb.example.com,Alma,psychiatrist\n",
            source="t",
            now=NOW,
        )
        box = mailbox.Maildir(tmp_path / "inbox", create=True)
        box.add(
            b"From: alma@nb.example.com\r\nTo: maya@calmharbor.example.com\r\n"
            b"Subject: Re: hello\r\nMessage-ID: <r1@nb.example.com>\r\n\r\nYes, let's talk.\r\n"
        )
        inbox = MaildirInbox(tmp_path / "inbox")
        processor = build_parts(settings, store).processor
        first = inbox.sync_once(processor, now=lambda: NOW)
        assert [(r.kind, r.contact) for r in first.results] == [("reply", "alma@nb.example.com")]
        assert show_contact(store, "alma@nb.example.com").contact.stage == "replied"
        assert inbox.sync_once(processor, now=lambda: NOW).results == []
        # Read-only: still in new/, unflagged.
        assert len(list((tmp_path / "inbox" / "new").iterdir())) == 1
        # A new process reads it again; the Message-ID dedupe gives it no second effect.
        again = MaildirInbox(tmp_path / "inbox").sync_once(processor, now=lambda: NOW)
        assert [r.effect for r in again.results] == ["seen before: no effect"]
    finally:
        store.close()


def test_a_missing_maildir_is_named(config_file: Path, tmp_path: Path) -> None:
    settings = load_config(config_file)
    store = open_store(settings.database_url)
    try:
        processor = build_parts(settings, store).processor
        with pytest.raises(ConfigError, match=r"inbound\.maildir: can.t read"):
            MaildirInbox(tmp_path / "nope").sync_once(processor, now=lambda: NOW)
    finally:
        store.close()


def test_config_check_names_a_maildir_that_is_not_one(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from outreach.config import check_config_files

    monkeypatch.setenv("OUTREACH_INBOUND__MAILDIR", str(tmp_path))
    problems = check_config_files(load_config(config_file))
    assert problems == [f"inbound.maildir: {tmp_path} is not a Maildir (no cur/ folder in it)"]
