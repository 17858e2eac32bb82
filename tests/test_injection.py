"""Header injection: a line break in a contact's name, as it is or in an RFC 2047 encoded word,
is refused at import and again at compose, and nothing with a smuggled header reaches SMTP."""

from __future__ import annotations

import base64
import csv
import email
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from outreach.config import load_config
from outreach.domain.fields import email_key
from outreach.errors import TemplateProblem
from outreach.mail.compose import Thread, build_message
from outreach.mail.connections import open_smtp
from outreach.mail.notices import notice
from outreach.mail.templates import RenderedMessage
from outreach.services.workflow import send_notices
from outreach.store.database import open_store
from outreach.store.models import ContactRow
from tests.conftest import Run
from tests.mailstack import SmtpServer

SMUGGLED = "Di\r\nBcc: evil4@evil.test"
# Values that become a real "Bcc:" line once the email package decodes them, or that hold a
# line break other than CR and LF as they are.
ENCODED = {
    "q": "=?utf-8?q?Di=0D=0ABcc:_evil4@evil.test?=",
    "b": f"=?utf-8?b?{base64.b64encode(SMUGGLED.encode()).decode()}?=",
    "unknown charset": "=?x-unknown?q?Di=0D=0ABcc:_evil4@evil.test?=",
    "language tag": "=?utf-8*en?q?Di=0D=0ABcc:_evil4@evil.test?=",
    "glued to a word": "Ann=?utf-8?q?=0ABcc:_evil4@evil.test?=",
    "quoted": '"=?utf-8?q?Di=0D=0ABcc:_evil4@evil.test?="',
    "lone LF": "=?utf-8?q?Di=0ABcc:_evil4@evil.test?=",
    "NUL": "=?utf-8?q?Di=00?=",
    "U+2028 encoded": "=?utf-8?q?Di=E2=80=A8Bcc:_evil4@evil.test?=",
}
RAW = {
    "U+2028": "Di\u2028Bcc: evil4@evil.test",
    "U+2029": "Di\u2029Bcc: evil4@evil.test",
    "U+0085": "Di\x85Bcc: evil4@evil.test",
    "VT": "Di\x0bBcc: evil4@evil.test",
    "FF": "Di\x0cBcc: evil4@evil.test",
    "FS": "Di\x1cBcc: evil4@evil.test",
}
FIRST_ROW = {
    "email": "ok@nb.example.com",
    "first_name": "Alma",
    "last_name": "Reyes",
    "organization": "North Bay",
    "segment": "psychiatrist",
}
SECOND_ROW = {**FIRST_ROW, "email": "di@lm.example.org", "first_name": "Di", "segment": "teacher"}
NOW = "2026-11-30T09:00"
T0 = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)


def csv_with(name: str, column: str = "first_name") -> str:
    """A contacts file whose second row (line 3) has ``name`` in ``column``."""
    out = io.StringIO()
    writer = csv.DictWriter(out, list(FIRST_ROW), lineterminator="\n")
    writer.writeheader()
    writer.writerow(FIRST_ROW)
    writer.writerow({**SECOND_ROW, column: name})
    return out.getvalue()


def smuggled_headers(sink: SmtpServer) -> list[str]:
    """Every header line at the SMTP server that names evil.test or is a Bcc."""
    found = []
    for envelope in sink.received:
        message = email.message_from_bytes(envelope.data)
        found += [f"{k}: {v}" for k, v in message.items() if k.lower() == "bcc"]
        head = envelope.data.split(b"\r\n\r\n", 1)[0]
        found += [line.decode() for line in head.split(b"\r\n") if b"evil" in line]
        found += [r for r in envelope.rcpt_tos if "evil" in r]
    return found


class TestImport:
    @pytest.mark.parametrize("name", [*ENCODED.values(), *RAW.values()], ids=[*ENCODED, *RAW])
    def test_refused_naming_line_and_column(
        self, cli: Callable[..., Run], tmp_path: Path, name: str
    ) -> None:
        path = tmp_path / "contacts.csv"
        path.write_text(csv_with(name), encoding="utf-8")
        run = cli("contacts", "import", str(path))
        assert run.exit_code == 2, run.output
        assert "line 3, column 2 (first_name): " in run.stderr
        assert "a field must be one line" in run.stderr
        assert json.loads(cli("contacts", "list", "--json").stdout) == []  # all rows or none

    def test_an_encoded_word_is_named_as_such(
        self, cli: Callable[..., Run], tmp_path: Path
    ) -> None:
        path = tmp_path / "contacts.csv"
        path.write_text(csv_with(ENCODED["q"], column="organization"), encoding="utf-8")
        run = cli("contacts", "import", str(path))
        assert (
            "line 3, column 4 (organization): holds an encoded word (=?...?=) that decodes to a "
            "line break or NUL, or can't be decoded; a field must be one line"
        ) in run.stderr

    def test_a_harmless_encoded_word_imports(self, cli: Callable[..., Run], tmp_path: Path) -> None:
        path = tmp_path / "contacts.csv"
        path.write_text(csv_with("=?utf-8?q?Ren=C3=A9e?="), encoding="utf-8")
        assert cli("contacts", "import", str(path)).exit_code == 0


@pytest.mark.parametrize("variant", ["q", "b", "quoted", "U+2028"])
def test_dispatch_refuses_a_stored_name_and_sends_the_rest(
    outbound_config: Path, cli: Callable[..., Run], smtp_sink: SmtpServer, variant: str
) -> None:
    """A name that reached the store some other way (an older import, a hand edit) is
    refused at compose: the pass reports it, skips that contact and sends the others."""
    path = outbound_config.parent / "ok.csv"
    path.write_text(
        "email,first_name,last_name,segment\nok@nb.example.com,Alma,Reyes,psychiatrist\n"
    )
    assert cli("contacts", "import", str(path)).exit_code == 0
    store = open_store(load_config(outbound_config).database_url)
    try:
        with store.session() as session:
            session.add(
                ContactRow(
                    email="di@nb.example.com",
                    email_key=email_key("di@nb.example.com"),
                    first_name={**ENCODED, **RAW}[variant],
                    last_name="Reyes",
                    segment="psychiatrist",
                    stage="new",
                    tags=[],
                    custom={},
                    created_at=T0,
                    updated_at=T0,
                    next_check_at=T0,
                )
            )
    finally:
        store.close()
    run = cli("send-due", "--once", "--now", NOW)
    assert smuggled_headers(smtp_sink) == []
    assert [e.rcpt_tos for e in smtp_sink.received] == [["ok@nb.example.com"]], run.output
    assert "di@nb.example.com: not sent: To header: " in run.output
    assert "line break" in run.output
    outbox = json.loads(cli("outbox", "list", "--json").stdout)
    assert [row["email"] for row in outbox] == ["ok@nb.example.com"]


@pytest.mark.parametrize("name", [*ENCODED.values(), *RAW.values()], ids=[*ENCODED, *RAW])
@pytest.mark.parametrize("where", ["to_name", "subject"])
def test_compose_names_the_header(config_file: Path, name: str, where: str) -> None:
    settings = load_config(config_file)
    args: dict[str, object] = {
        "to_name": "Ann Lee",
        "to_address": "ann@x.example.com",
        "message_id": "<1@calmharbor.example.com>",
        "thread": Thread("Hello"),
        "date": T0,
    }
    if where == "subject":
        args["thread"] = Thread(f"For {name}")
    else:
        args["to_name"] = name
    rendered = RenderedMessage(template="t", subject="Hello", body="Hi.\n")
    header = "Subject" if where == "subject" else "To"
    with pytest.raises(TemplateProblem, match=rf"^{header} header: .*line break"):
        build_message(settings, rendered, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("subject", "refers_to", "header"),
    [
        # workflow's notice: "outreach: reply from NAME", the contact's name from the store
        (f"outreach: reply from {ENCODED['q']}", None, "Subject"),
        (f"outreach: reply from {ENCODED['b']}", None, "Subject"),
        (f"outreach: reply from {RAW['U+2028']}", None, "Subject"),
        # the Message-ID it answers comes from the inbound message: the sender's choice
        ("outreach: reply from Di", "<=?utf-8?q?a=0D=0ABcc:_evil4@evil.test?=@x>", "References"),
    ],
    ids=["q", "b", "U+2028", "references"],
)
def test_a_notice_is_checked_the_same_way(
    outbound_config: Path, smtp_sink: SmtpServer, subject: str, refers_to: str | None, header: str
) -> None:
    settings = load_config(outbound_config)
    lines = ["Di <di@nb.example.com> (psychiatrist, now replied): reply <r@x>."]
    with pytest.raises(TemplateProblem, match=rf"^{header} header: .*line break"):
        # Composed, then sent on the real server unless refused, as workflow does.
        send_notices(open_smtp(settings), [notice(settings, subject, lines, refers_to)], "test")
    assert smuggled_headers(smtp_sink) == []
    assert smtp_sink.received == []


@pytest.mark.parametrize("name", ["Ren=?é?q?x?=", "Di=?\udcff?q?x?=", "=?utf-8?b?!!!?="])
def test_an_encoded_word_no_decoder_can_read_is_no_crash(name: str) -> None:
    """A charset name that is not ASCII made decode_header raise CharsetError (a traceback at
    import, and every dispatch pass failing for a stored contact)."""
    from outreach.domain.fields import has_control_characters, hides_control_characters

    assert not has_control_characters(name)
    hides_control_characters(name)  # answers, whatever it answers
