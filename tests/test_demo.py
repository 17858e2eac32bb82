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
    assert text.count("Sent the intro to") == 11
    assert "Out of office: Ms. Natarajan (School counselors and teachers): paused until" in text
    assert "Bounced: Mr. Beaulieu (School counselors and teachers): bounced and suppressed" in text
    assert "Unsubscribed: Pastor Okafor (Clergy): unsubscribed and suppressed." in text
    assert "Reply from Dr. Reyes (Psychiatrists): replied" in text
    assert "moved to engaged" in text  # the keyword rule
    assert "Sent the thank-you to alma.reyes@northbaypsych.example.com (Psychiatrists)." in text
    assert "Sent follow-up 1 to" in text
    assert "Sent follow-up 2 to" in text
    assert "Recorded a referral from alma.reyes@northbaypsych.example.com; they are now " in text
    # Sentences: no empty lists, no Message-IDs, no machine leftovers.
    assert all(line.endswith(".") for line in lines), [x for x in lines if not x.endswith(".")]
    for leftover in ("rules: ;", ": ;", "; ;", "<", "queued step(s)", "  -> "):
        assert leftover not in text, leftover
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
    assert "Reply from Dr. Reyes (Psychiatrists)" in subjects


def test_the_command_prints_the_pipeline_and_where_the_mail_is(tmp_path: Path) -> None:
    where = tmp_path / "not" / "yet" / "there"  # created, parents and all
    result = CliRunner().invoke(app, ["demo", "--dir", str(where)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "the pipeline after the demo" in result.stdout
    assert "every email is a file:" in result.stdout


def test_missing_parent_folders_are_created(tmp_path: Path) -> None:
    from outreach.runtime.demo import make_folder

    made = make_folder(tmp_path / "a" / "b" / "c")
    assert made.parent == tmp_path / "a" / "b" / "c"
    assert made.is_dir() and made.name.startswith("outreach-demo-")


def test_a_folder_that_cannot_be_created_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    impossible = tmp_path / "a-file" / "such" / "place"
    with pytest.raises(ConfigError, match=r"demo: can't create a folder in .*a-file/such/place"):
        run_demo(impossible, print)
    result = CliRunner().invoke(app, ["demo", "--dir", str(impossible)], catch_exceptions=False)
    assert result.exit_code == 2
    assert "try --dir SOMEWHERE" in result.stderr
