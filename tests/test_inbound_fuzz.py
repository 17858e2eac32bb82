"""Hostile inbound messages, generated: each is handled or recorded ``unprocessable``, none
raises, and a good reply after them still moves its contact."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from outreach.domain.states import InboundKind
from outreach.mail.abc import Watermark
from outreach.store.models import InboundEventRow
from tests.mailstack import Dovecot, SmtpServer
from tests.test_inbound import T0, Practice, reply

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

ALMA, TOM = "alma@nb.example.com", "tom@lm.example.org"
NOW = T0 + timedelta(hours=2)
OURS = "{ours}"  # stands for Tom's intro's Message-ID, filled in once drawn

DATES = st.one_of(
    st.sampled_from(
        [
            "Mon, 02 Mar 2026 12:00:00 -0000",  # naive (RFC 5322 3.3)
            "Fri, 31 Dec 9999 23:50:00 -0100",  # past year 9999 in UTC
            "Sat, 01 Jan 0001 00:00:00 +1400",
            "Thu, 01 Jan 1970 00:00:00 +0100",  # before the epoch in UTC
            "Mon, 02 Mar 99999 12:00:00 +0000",
            "Mon, 32 Foo 2026 25:61:61 +9999",
            "2026-03-02T12:00:00",
            "",
        ]
    ),
    st.text(max_size=40),
)
ENCODED = st.sampled_from(
    [
        "=?utf-8?q?Hi=0D=0ABcc:_x@evil.test?=",  # CR LF in an encoded word
        "=?utf-8?b?" + base64.b64encode(b"a\r\nTo: x@evil.test\x00").decode() + "?=",
        "=?x-klingon-8?q?abc?=",  # a charset nobody knows
        "=?utf-8?q?=FF=FE=80?=",  # not UTF-8 at all
        "=?utf-8?b?###?=",  # not base64
        "=?utf-8?q?=E2=80=A8?=",  # U+2028
    ]
)
SEPARATORS = st.sampled_from(["\u2028", "\u2029", "\x00", "\x0b", "\x0c", "\x85", "\x1c", "\t"])
HOSTILE = st.lists(
    st.one_of(ENCODED, SEPARATORS, st.text(max_size=20), st.sampled_from([OURS, "<", ">", "@"])),
    max_size=6,
).map("".join)
LONG = st.integers(0, 2000)
MESSAGE_IDS = st.one_of(
    LONG.map(lambda n: f"<{'x' * n}@nb.example.com>"),
    HOSTILE.map(lambda s: f"<{s}@x>"),
    HOSTILE,
)
SENDERS = st.one_of(
    st.sampled_from([TOM, f"Tom Beaulieu <{TOM}>", "MAILER-DAEMON@lm.example.org"]),
    LONG.map(lambda n: f"x@{'d' * n}.example.net"),
    HOSTILE.map(lambda s: f"{s} <{TOM}>"),
    HOSTILE,
)
BODIES = st.one_of(
    st.sampled_from(
        [
            "Yes, let's talk.",
            "I am out of the office until 9999-12-31.",  # a return date no calendar holds
            "Out of office, back on 12/31/0001.",
            "Please unsubscribe me.",
        ]
    ),
    HOSTILE,
)
SHAPES = st.sampled_from(["reply", "out_of_office", "report", "eight_bit"])


def header(name: str, value: str | bytes) -> bytes:
    raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
    return name.encode() + b": " + raw + b"\r\n"


@st.composite
def hostile_messages(draw: st.DrawFn, ours: str) -> bytes:
    """A message with hostile values where a header or a report holds one."""

    def value(strategy: st.SearchStrategy[str]) -> str:
        return draw(strategy).replace(OURS, ours)

    shape = draw(SHAPES)
    refers_to = value(st.one_of(st.just(OURS), HOSTILE))
    lines = [
        header("From", value(SENDERS)),
        header("To", "maya@calmharbor.example.com"),
        header("Subject", value(HOSTILE)),
        header("Date", value(DATES)),
        header("Message-ID", value(MESSAGE_IDS)),
        header("In-Reply-To", refers_to),
        header("References", refers_to),
        header("Authentication-Results", value(HOSTILE)),
    ]
    body = value(BODIES).encode("utf-8", "surrogatepass")
    if shape == "out_of_office":
        lines.append(header("Auto-Submitted", value(HOSTILE) or "auto-replied"))
    if shape == "eight_bit":
        lines.append(header("Subject", draw(st.binary(max_size=30))))
        lines.append(header("Content-Type", "text/plain; charset=" + value(HOSTILE)))
        body = draw(st.binary(max_size=200))
    if shape != "report":
        return b"".join(lines) + b"\r\n" + body + b"\r\n"
    per_recipient = (
        header("Final-Recipient", "rfc822; " + value(st.one_of(st.just(TOM), SENDERS)))
        + header("Action", value(st.one_of(st.just("failed"), HOSTILE)))
        + header("Status", value(st.one_of(st.sampled_from(["5.1.1", "4.2.2", "5.7.1"]), HOSTILE)))
    )
    return (
        b"".join(lines)
        + b"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; "
        b'boundary="B"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\n'
        + body
        + b"\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        + header("Original-Envelope-Id", value(st.one_of(st.just(OURS), HOSTILE)))
        + b"\r\n"
        + per_recipient
        + b"\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        + header("Message-ID", value(st.one_of(st.just(OURS), MESSAGE_IDS)))
        + b"\r\n--B--\r\n"
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def practice(
    request: pytest.FixtureRequest,
    outbound_config: Path,
    dovecot: Dovecot,
    smtp_sink: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Practice]:
    """Intros sent to Alma and Tom, on each backend; the provider's Authentication-Results
    are read, so the generated ones are parsed too."""
    if request.param == "postgres":
        monkeypatch.setenv(
            "OUTREACH_STORAGE__URL", request.getfixturevalue("postgres").create_database()
        )
    monkeypatch.setenv("OUTREACH_INBOUND__AUTHSERV_ID", "mx.calmharbor.example.com")
    p = Practice(outbound_config, dovecot)
    yield p
    p.store.close()


KINDS = {str(kind) for kind in InboundKind}


def test_hostile_messages_never_block_the_inbox(practice: Practice) -> None:
    uids = iter(range(1, 1_000_000))

    @given(st.data())
    @settings(
        max_examples=120,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    def handled(data: st.DataObject) -> None:
        raw = data.draw(hostile_messages(practice.ids[TOM]))
        mark = Watermark("INBOX", 1, next(uids))
        result = practice.processor.handle(raw, folder="INBOX", now=NOW, watermark=mark)
        assert result.kind in KINDS
        with practice.store.session() as session:
            recorded = session.scalar(
                select(InboundEventRow.kind).where(
                    InboundEventRow.message_key == result.message_key
                )
            )
        assert recorded is not None  # processed, or recorded unprocessable
        assert practice.processor.watermark("INBOX") == mark  # and read past

    handled()
    assert practice.stage(ALMA) == "contacted"
    good = reply(ALMA, practice.ids[ALMA], "Yes, let's talk.", message_id="<after@nb.example.com>")
    result = practice.processor.handle(good.replace("\n", "\r\n").encode(), folder="INBOX", now=NOW)
    assert (result.contact, result.effect) == (ALMA, "replied; 0 queued step(s) cancelled")
    assert practice.stage(ALMA) == "replied"
