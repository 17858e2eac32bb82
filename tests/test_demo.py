"""``outreach demo``: the whole loop on the embedded mail setup, end to end."""

from __future__ import annotations

import mailbox
from email import message_from_bytes
from pathlib import Path

import pytest
from typer.testing import CliRunner

from outreach.cli import app
from outreach.errors import ConfigError
from outreach.runtime.demo import run_demo


def test_the_demo_runs_the_whole_loop_and_leaves_the_mail_to_read(tmp_path: Path) -> None:
    lines: list[str] = []
    demo = run_demo(tmp_path, lines.append)
    text = "\n".join(lines)
    assert text.count("sent     intro to") == 11
    assert "inbound  out_of_office from priya.natarajan@lincolnmiddle.example.org: paused" in text
    assert "inbound  bounce from tom.beaulieu@lincolnmiddle.example.org: bounced" in text
    assert "inbound  unsubscribe from grace.okafor@stmarkschurch.example.org: unsubscribed" in text
    assert "inbound  reply from alma.reyes@northbaypsych.example.com: replied" in text
    assert "stage engaged" in text  # the keyword rule
    assert "sent     thank-you (rule) to alma.reyes@northbaypsych.example.com" in text
    assert "sent     follow-up 1 to" in text
    assert "sent     follow-up 2 to" in text
    stages = {email: stage for email, _segment, stage, _paused in demo.final}
    assert stages["alma.reyes@northbaypsych.example.com"] == "referring"
    assert stages["jonah.whitfield@northbaypsych.example.com"] == "replied"
    assert stages["tom.beaulieu@lincolnmiddle.example.org"] == "bounced"
    assert stages["grace.okafor@stmarkschurch.example.org"] == "unsubscribed"
    assert len(demo.final) == 11
    # Every email is a file to open; the follow-ups thread under the intro.
    sam = mailbox.Maildir(demo.mail / "sam.ortiz@harborfamilymed.example.com", create=False)
    received = sorted(
        (message_from_bytes(sam.get_bytes(k)) for k in sam.iterkeys()), key=lambda m: m["Date"]
    )
    intro = next(m for m in received if not m["Subject"].startswith("Re:"))
    follow_ups = [m for m in received if m["Subject"].startswith("Re:")]
    assert len(follow_ups) == 2
    assert all(intro["Message-ID"] in m["References"] for m in follow_ups)
    assert "120 Harbor Street" in intro.get_payload(decode=True).decode()
    # Nothing went to an opted-out or bounced source after the event.
    grace = mailbox.Maildir(demo.mail / "grace.okafor@stmarkschurch.example.org", create=False)
    assert len(grace) == 1
    # The therapist's notices and the bounce report are in the practice's inbox.
    practice = mailbox.Maildir(demo.practice_inbox, create=False)
    subjects = [message_from_bytes(practice.get_bytes(k))["Subject"] for k in practice.iterkeys()]
    assert "Undelivered Mail Returned to Sender" in subjects
    assert "outreach: reply from Alma Reyes" in subjects


def test_the_command_prints_the_pipeline_and_where_the_mail_is(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--dir", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "the pipeline after the demo" in result.stdout
    assert "every email is a file:" in result.stdout


def test_a_folder_that_cannot_be_created_is_one_clear_line(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "place"
    with pytest.raises(ConfigError, match=r"demo: can't create a folder in .*no/such/place"):
        run_demo(missing, print)
    result = CliRunner().invoke(app, ["demo", "--dir", str(missing)], catch_exceptions=False)
    assert result.exit_code == 2
    assert "try --dir SOMEWHERE" in result.stderr
