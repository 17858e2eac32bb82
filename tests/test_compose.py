"""Composing: headers, threading, unsubscribe, no header injection, the greeting, and a
contact's missing field told apart from a template's error."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, default
from pathlib import Path
from typing import Any

import pytest

from outreach.config import load_config
from outreach.errors import TemplateProblem
from outreach.mail.compose import (
    Thread,
    build_message,
    greeting,
    reply_subject,
    template_context,
    thread_for,
)
from outreach.mail.templates import MissingContactField, RenderedMessage, TemplateSet

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


def reference_message(settings: Any, body: str, to_name: str, to: str, thread: Thread) -> bytes:
    """The message as the email package builds it field by field: what build_message's
    direct bytes must read as."""
    message = EmailMessage(policy=SMTP)
    sender = settings.sender
    message["From"] = Address(sender.from_name, addr_spec=sender.from_address)
    message["To"] = Address(to_name, addr_spec=to) if to_name else to
    message["Subject"] = thread.subject
    message["Date"] = "Mon, 02 Mar 2026 15:00:00 +0000"
    message["Message-ID"] = "<1@calmharbor.example.com>"
    if thread.in_reply_to:
        message["In-Reply-To"] = thread.in_reply_to
        message["References"] = " ".join(thread.references)
    message["List-Unsubscribe"] = f"<mailto:{sender.from_address}?subject=unsubscribe>"
    message.set_content(body, charset="utf-8", cte="quoted-printable")
    return message.as_bytes()


LONG_IDS = tuple(f"<{i:032x}@calmharbor.example.com>" for i in range(4))


class TestDirectBytes:
    """build_message writes bytes directly; they must read as the email package's message."""

    @pytest.mark.parametrize(
        ("to_name", "to", "subject", "body", "thread"),
        [
            ("Ann Lee", "ann@x.example.com", "Hello", "Dear Ann,\n\nHi.\n", None),
            ("Dr. Ann O'Lee, MD", "ann@x.example.com", "Hi", "x", None),
            ('Ann "Jo" Lee', "a@x.example.com", "Hi", "no newline at the end", None),
            ("José Núñez-Ibáñez", "j@x.example.com", "Café — a note", "Olá, ça va?\n", None),
            ("", "bare@x.example.com", "Hi", "line\r\nwith CRLF\rand CR\n", None),
            ("A" * 90, "long@x.example.com", "S" * 120, "word " * 60 + "\n", None),
            ("Ann", "a@x.example.com", "Hi", "a = b\n.\n..\nFrom here\ntrailing  \n", None),
            ("Ann", "a@x.example.com", "Re: Hi", "x" * 300 + "\n", LONG_IDS),
            ("Ann", "a@x.example.com", "Re: Hi", "one id", LONG_IDS[:1]),
            ("Anna Bücher", "anna@bücher.example", "Hi", "an internationalized domain", None),
        ],
    )
    def test_reads_as_the_email_package_builds_it(
        self,
        config_file: Path,
        to_name: str,
        to: str,
        subject: str,
        body: str,
        thread: tuple[str, ...] | None,
    ) -> None:
        settings = load_config(config_file)
        threaded = Thread(subject, thread[-1], thread) if thread else Thread(subject)
        ours = build_message(
            settings,
            RenderedMessage(template="t", subject=subject, body=body),
            to_name=to_name,
            to_address=to,
            message_id="<1@calmharbor.example.com>",
            thread=threaded,
            date=NOW,
        ).data
        theirs = reference_message(settings, body, to_name, to, threaded)
        mine, reference = (message_from_bytes(b, policy=default) for b in (ours, theirs))
        assert sorted(mine.keys()) == sorted(reference.keys())
        for name in reference:
            assert " ".join(str(mine[name]).split()) == " ".join(str(reference[name]).split())
        assert mine.get_content() == reference.get_content()
        assert all(len(line) <= 998 for line in ours.split(b"\r\n"))
        assert b"\n" not in ours.replace(b"\r\n", b"")  # CRLF only
        # Folded no worse than the email package folds (an unbreakable word stays long).
        longest = [max(map(len, b.split(b"\r\n\r\n", 1)[0].split(b"\r\n"))) for b in (ours, theirs)]
        assert longest[0] <= max(78, longest[1])


class TestThreading:
    def test_follow_up_threads_under_the_last_message(self) -> None:
        thread = thread_for(None, True, [("<a@x>", "Hello"), ("<b@x>", "Re: Hello")])
        assert thread == Thread("Re: Hello", "<b@x>", ("<a@x>", "<b@x>"))

    def test_unthreaded_step_keeps_its_own_subject(self) -> None:
        assert thread_for("New topic", False, [("<a@x>", "Hello")]) == Thread("New topic")

    def test_re_is_not_stacked(self) -> None:
        assert reply_subject("RE: Hello") == "RE: Hello"


class TestGreeting:
    """The opening line: the contact's own title first, the segment's only for the untitled."""

    @pytest.mark.parametrize(
        ("title", "first", "last", "address_as", "expected"),
        [
            ("Rabbi", "Ari", "Feldman", "Pastor", "Dear Rabbi Feldman,"),
            ("Rev.", "Ann", "Cole", "", "Dear Rev. Cole,"),
            ("Ms.", None, "Reyes", "Dr.", "Dear Ms. Reyes,"),
            (None, "Alma", "Reyes", "Dr.", "Dear Dr. Reyes,"),  # every source here is a doctor
            (None, "Priya", "Shah", "", "Dear Priya,"),
            ("NP", "Jin", "Park", "Dr.", "Dear Jin,"),  # letters after a name: not a form
            ("LCSW", None, "Park", "", "Hello,"),
            ("Dr.", None, None, "Dr.", "Hello,"),  # a title without a last name
            (None, None, None, "", "Hello,"),
        ],
    )
    def test_greeting(
        self,
        title: str | None,
        first: str | None,
        last: str | None,
        address_as: str,
        expected: str,
    ) -> None:
        assert greeting(title, first, last, address_as) == expected

    def test_the_context_carries_the_greeting(self, config_file: Path) -> None:
        settings = load_config(config_file)
        contact = {"email": "g@x.example.com", "last_name": "Feldman", "title": "Rabbi"}
        context = template_context(settings, "clergy", contact, step_number=1, template="intro")
        assert context["greeting"] == "Dear Rabbi Feldman,"


class TestMissingContactFields:
    """A contact field one contact lacks is that contact's missing data, told apart from a
    template's own error."""

    def render(self, tmp_path: Path, config_file: Path, body: str, contact: dict[str, Any]) -> str:
        (tmp_path / "t" / "_partials").mkdir(parents=True, exist_ok=True)
        (tmp_path / "t" / "_default").mkdir(exist_ok=True)
        (tmp_path / "t" / "_partials" / "footer.txt.j2").write_text("-- \nfooter\n")
        (tmp_path / "t" / "_default" / "x.txt.j2").write_text(
            f"Subject: Hi\n\n{body}\n{{% include '_partials/footer.txt.j2' %}}\n"
        )
        context = template_context(
            load_config(config_file), "clergy", contact, step_number=1, template="x"
        )
        return TemplateSet(tmp_path / "t").render("clergy", "x", context, needs_subject=True).body

    @pytest.mark.parametrize(
        "body",
        [
            "{{ contact.first_name }}",
            "{{ contact.first_name | upper }}",
            "{{ 'Hi ' ~ contact.first_name }}",
            "{{ contact['first_name'] }}",
        ],
    )
    def test_a_missing_field_names_the_field(
        self, tmp_path: Path, config_file: Path, body: str
    ) -> None:
        with pytest.raises(MissingContactField) as caught:
            self.render(tmp_path, config_file, body, {"email": "a@x.example.com"})
        assert caught.value.field == "first_name"
        assert "_default/x.txt.j2, line 3" in str(caught.value)

    def test_a_missing_custom_field_names_it(self, tmp_path: Path, config_file: Path) -> None:
        contact = {"email": "a@x.example.com", "custom": {"other": "1"}}
        with pytest.raises(MissingContactField) as caught:
            self.render(tmp_path, config_file, "{{ contact.custom.years }}", contact)
        assert caught.value.field == "years"

    def test_a_missing_field_is_false_in_an_if(self, tmp_path: Path, config_file: Path) -> None:
        body = "{% if contact.organization %}at {{ contact.organization }}{% else %}hi{% endif %}"
        rendered = self.render(tmp_path, config_file, body, {"email": "a@x.example.com"})
        assert rendered.startswith("hi") and "at" not in rendered

    def test_anything_else_undefined_is_the_templates_error(
        self, tmp_path: Path, config_file: Path
    ) -> None:
        with pytest.raises(TemplateProblem) as caught:
            self.render(tmp_path, config_file, "{{ practice.nme }}", {"email": "a@x.example.com"})
        assert not isinstance(caught.value, MissingContactField)
        assert "undefined variable 'nme'" in str(caught.value)
