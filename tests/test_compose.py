"""Message headers: threading, unsubscribe, and no way to inject a header."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from pathlib import Path

import pytest

from outreach.config import load_config
from outreach.mail.compose import Thread, build_message, reply_subject, thread_for
from outreach.mail.templates import RenderedMessage

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
RENDERED = RenderedMessage(template="t", subject="Hello", body="Dear Ann,\n\nHi.\n")


def build(config_file: Path, **kw: object) -> bytes:
    settings = load_config(config_file)
    args: dict[str, object] = {
        "to_name": "Ann Lee",
        "to_address": "ann@x.example.com",
        "message_id": "<1@calmharbor.example.com>",
        "thread": Thread("Hello"),
        "date": NOW,
    }
    args.update(kw)
    return build_message(settings, RENDERED, **args).data  # type: ignore[arg-type]


class TestHeaders:
    def test_basic_headers(self, config_file: Path) -> None:
        message = message_from_bytes(build(config_file))
        assert message["To"] == "Ann Lee <ann@x.example.com>"
        assert message["From"] == '"Dr. Maya Lindqvist" <maya@calmharbor.example.com>'
        assert message["Date"] == "Mon, 02 Mar 2026 15:00:00 +0000"
        assert "List-Unsubscribe-Post" not in message

    def test_one_click_unsubscribe_when_a_url_is_configured(
        self, config_file: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("OUTREACH_SENDING__UNSUBSCRIBE_URL", "https://calmharbor.example.com/u")
        message = message_from_bytes(build(config_file))
        assert " ".join(message["List-Unsubscribe"].split()) == (
            "<mailto:maya@calmharbor.example.com?subject=unsubscribe>, "
            "<https://calmharbor.example.com/u>"
        )
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    @pytest.mark.parametrize("field", ["subject", "to_name", "message_id"])
    def test_header_injection_is_impossible(self, config_file: Path, field: str) -> None:
        evil = "Hello\r\nBcc: everyone@example.com"
        args: dict[str, object] = {"thread": Thread(evil)} if field == "subject" else {field: evil}
        with pytest.raises(ValueError, match=r"linefeed|line break|CR or LF"):
            build(config_file, **args)


class TestThreading:
    def test_follow_up_threads_under_the_last_message(self) -> None:
        thread = thread_for(None, True, [("<a@x>", "Hello"), ("<b@x>", "Re: Hello")])
        assert thread == Thread("Re: Hello", "<b@x>", ("<a@x>", "<b@x>"))

    def test_unthreaded_step_keeps_its_own_subject(self) -> None:
        assert thread_for("New topic", False, [("<a@x>", "Hello")]) == Thread("New topic")

    def test_re_is_not_stacked(self) -> None:
        assert reply_subject("RE: Hello") == "RE: Hello"
