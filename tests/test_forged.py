"""Forged mail on real Dovecot: a bounce must name a message we sent to that address, and a
From the practice's own provider found failing DMARC (or SPF and DKIM) changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from outreach.domain.classify import classify
from outreach.runtime.parts import build_parts
from outreach.store.models import InboundEventRow, SuppressionRow
from tests.mailstack import Dovecot, SmtpServer
from tests.test_inbound import Practice, dsn_for

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

ALMA, TOM = "alma@nb.example.com", "tom@lm.example.org"
OURS = "mx.calmharbor.example.com"  # the authserv-id the practice's provider stamps
KEYWORD_RULE = """
[[rules]]
on = "reply"
when = { keywords = ["refer"] }
then = { set_stage = "engaged" }
"""


def report(
    sender: str, recipient: str, status: str, returned: str = "", per_message: str = "", n: int = 0
) -> str:
    """A multipart/report (RFC 3464) for ``recipient``; ``returned`` is its text/rfc822-headers
    part (empty: none, as a forger who never saw our message must leave it)."""
    action = "delayed" if status.startswith("4") else "failed"
    parts = (
        f"From: {sender}\nTo: maya@calmharbor.example.com\nSubject: Delivery Status Notification\n"
        f"Message-ID: <dsn-{status}-{n}@evil.test>\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: text/plain\n\nTrouble delivering.\n"
        f"--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.evil.test\n"
        f"{per_message}\n"
        f"Final-Recipient: rfc822; {recipient}\nAction: {action}\nStatus: {status}\n\n"
    )
    if returned:
        parts += f"--B\nContent-Type: text/rfc822-headers\n\n{returned}\n\n"
    return parts + "--B--"


def suppressed(practice: Practice) -> list[str]:
    with practice.store.session() as session:
        return list(session.scalars(select(SuppressionRow.email_key)))


@pytest.fixture
def authserv_id() -> str:
    """``[inbound] authserv_id`` (empty: Authentication-Results are not read)."""
    return ""


@pytest.fixture
def practice(
    authserv_id: str,
    outbound_config: Path,
    dovecot: Dovecot,
    smtp_sink: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Practice]:
    """Intros sent to Alma and Tom, and a keyword rule."""
    outbound_config.write_text(outbound_config.read_text() + KEYWORD_RULE)
    if authserv_id:
        monkeypatch.setenv("OUTREACH_INBOUND__AUTHSERV_ID", authserv_id)
    p = Practice(outbound_config, dovecot)
    yield p
    p.store.close()


class TestForgedBounces:
    """Nothing in a report proves it is about our mail but a Message-ID we sent to that address."""

    def test_a_policy_report_citing_nothing_pauses_nothing(self, practice: Practice) -> None:
        practice.deliver(report("random@evil.test", TOM, "5.7.1"))
        ((who, effect),) = practice.sync()
        assert who == TOM
        assert effect == (
            f"flagged, no effect: a bounce for {TOM} that names none of our messages to that "
            "address (forged, or not about our mail)"
        )
        assert build_parts(practice.settings, practice.store).dispatcher.paused_reason() is None

    def test_a_hard_report_citing_nothing_suppresses_nothing(self, practice: Practice) -> None:
        practice.deliver(report("random@evil.test", TOM, "5.1.1"))
        ((_who, effect),) = practice.sync()
        assert effect.startswith("flagged, no effect: a bounce for")
        assert practice.stage(TOM) == "contacted"
        assert suppressed(practice) == []

    def test_citing_our_message_to_someone_else_is_no_proof(self, practice: Practice) -> None:
        practice.deliver(report("random@evil.test", TOM, "5.1.1", "Message-ID: <x@evil.test>"))
        practice.deliver(
            report("random@evil.test", TOM, "5.1.1", f"Message-ID: {practice.ids[ALMA]}", n=1)
        )
        assert [effect.startswith("flagged, no effect") for _, effect in practice.sync()] == [
            True,
            True,
        ]
        assert (practice.stage(TOM), practice.stage(ALMA)) == ("contacted", "contacted")
        assert suppressed(practice) == []

    def test_a_bounce_for_a_rewritten_address_is_still_about_our_message(
        self, practice: Practice
    ) -> None:
        """An alias or forward rewrote Tom's address: Original-Recipient is ours, the
        Final-Recipient another; the returned headers cite what we sent him."""
        raw = dsn_for("tom.b@mail.lm.example.org", practice.ids[TOM], "5.1.1", 7).replace(
            "Final-Recipient:", f"Original-Recipient: rfc822; {TOM}\nFinal-Recipient:"
        )
        assert f"Original-Recipient: rfc822; {TOM}" in raw
        practice.deliver(raw)
        assert practice.sync() == [(TOM, "bounced and suppressed (user_unknown)")]

    def test_the_returned_message_id_or_envelope_id_is_proof(self, practice: Practice) -> None:
        practice.deliver(dsn_for(TOM, practice.ids[TOM], "5.1.1", 1))  # the headers we sent
        # RFC 3464 2.2.1: Original-Envelope-Id, the ENVID given at MAIL FROM (RFC 3461 4.4).
        envid = practice.ids[ALMA].replace("+", "+2B").replace("=", "+3D")
        practice.deliver(
            report(
                "postmaster@nb.example.com",
                ALMA,
                "5.1.1",
                per_message=f"Original-Envelope-Id: {envid}",
            )
        )
        assert practice.sync() == [
            (TOM, "bounced and suppressed (user_unknown)"),
            (ALMA, "bounced and suppressed (user_unknown)"),
        ]
        assert suppressed(practice) == [ALMA, TOM]


def forged_reply(authentication_results: list[str]) -> str:
    """A message in Alma's name that answers nothing of ours, with these headers on top."""
    stamps = "".join(f"Authentication-Results: {value}\n" for value in authentication_results)
    return (
        f"{stamps}From: Alma Reyes <{ALMA}>\nTo: maya@calmharbor.example.com\n"
        "Subject: a patient\nDate: Mon, 02 Mar 2026 12:00:00 -0500\n"
        "Message-ID: <forged@evil.test>\n\nI'd like to refer a patient to you.\n"
    )


class TestAuthenticationResults:
    """RFC 8601 section 5: only the practice's own provider's stamp is trusted, the topmost."""

    @pytest.fixture
    def authserv_id(self) -> str:
        return OURS

    @pytest.mark.parametrize(
        "verdict",
        [
            "dmarc=fail (p=none) header.from=nb.example.com",
            "spf=fail smtp.mailfrom=nb.example.com; dkim=fail header.d=nb.example.com",
        ],
    )
    def test_a_failing_from_changes_nothing(self, practice: Practice, verdict: str) -> None:
        practice.deliver(
            forged_reply(
                [
                    f"{OURS}; {verdict}",
                    # Below ours: written by the sender, who can claim anything.
                    f"{OURS}; dmarc=pass header.from=nb.example.com",
                ]
            )
        )
        ((who, effect),) = practice.sync()
        assert who == ALMA
        assert effect.startswith(f"flagged, no effect: address {ALMA}, but {OURS} says")
        assert practice.stage(ALMA) == "contacted"
        with practice.store.session() as session:
            event = session.scalars(select(InboundEventRow)).one()
        assert (event.kind, event.trusted) == ("reply", False)
        assert event.detail["authentication"].startswith(f"{OURS} says")

    def test_a_stamp_by_anyone_else_is_ignored(self, practice: Practice) -> None:
        practice.deliver(
            forged_reply(
                [
                    "filter.example.net; dmarc=fail header.from=nb.example.com",
                    f"{OURS}; dmarc=pass header.from=nb.example.com",
                ]
            )
        )
        ((who, effect),) = practice.sync()
        assert (who, practice.stage(ALMA)) == (ALMA, "engaged")
        assert effect.startswith("replied; 0 queued step(s) cancelled; rule 0 on reply")


class TestReadingTheStamp:
    """How an Authentication-Results value is read (pure: no servers)."""

    @staticmethod
    def failure(*stamps: str, authserv_id: str = OURS) -> str | None:
        raw = forged_reply(list(stamps)).replace("\n", "\r\n").encode()
        return classify(raw, received=date(2026, 3, 2), authserv_id=authserv_id).auth_failure

    def test_verdicts(self) -> None:
        assert self.failure(f"{OURS}; dmarc=fail") is not None
        assert self.failure(f"{OURS.upper()} 1; spf=fail; dkim=fail") is not None  # RFC 8601 2.5
        assert (
            self.failure(f"{OURS}; spf=fail; dkim=fail; dkim=pass") is None
        )  # one signature holds
        assert self.failure(f"{OURS}; spf=fail") is None  # SPF alone: a forwarder breaks it
        assert self.failure(f"{OURS}; none") is None
        assert self.failure(f"{OURS}; dmarc=fail", authserv_id="") is None  # off

    def test_quotes_and_comments_hide_nothing(self) -> None:
        # The envelope sender is the sender's to choose; quoted, it can hold "; dkim=pass".
        assert self.failure(f'{OURS}; spf=fail smtp.mailfrom="x;dkim=pass"@evil.test; dkim=fail')
        assert self.failure(f"{OURS}; (dmarc=pass (really)) dmarc=fail") is not None
        assert self.failure(f"(comment) {OURS}; dmarc=fail") is not None
