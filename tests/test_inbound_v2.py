"""Inbound v2 on real Dovecot: reports that change nothing, an out-of-office in German, a
recipient's own rejection versus a policy block, complaints, challenges, and the review of a
reading outreach is not sure about."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from outreach.runtime.parts import build_parts
from outreach.services.due import suppressed_keys
from outreach.services.inbound import held_for_review
from outreach.services.outbox import list_outbox, resume_sending
from outreach.services.status import gather_status
from tests.conftest import Run
from tests.mailstack import Dovecot, SmtpServer
from tests.test_inbound import T0, Practice, reply

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
TOM, ALMA = "tom@lm.example.org", "alma@nb.example.com"


@pytest.fixture
def practice(outbound_config: Path, dovecot: Dovecot, smtp_sink: SmtpServer) -> Iterator[Practice]:
    """Intros sent to Alma and Tom (see tests/test_inbound.py)."""
    p = Practice(outbound_config, dovecot)
    yield p
    p.store.close()


def report(kind: str, parts: str, *, n: int, sender: str = "MAILER-DAEMON@mx.example.net") -> str:
    return (
        f"From: {sender}\nTo: maya@calmharbor.example.com\nSubject: Report {n}\n"
        f"Message-ID: <report{n}@mx.example.net>\nDate: Mon, 02 Mar 2026 13:00:00 -0500\n"
        f"MIME-Version: 1.0\nContent-Type: multipart/report; report-type={kind}; "
        f'boundary="B"\n\n--B\nContent-Type: text/plain\n\nA report.\n{parts}--B--\n'
    )


def dsn(recipient: str, original: str, *, action: str, status: str, diagnostic: str, n: int) -> str:
    return report(
        "delivery-status",
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n"
        f"Final-Recipient: rfc822; {recipient}\nAction: {action}\nStatus: {status}\n"
        f"Diagnostic-Code: smtp; {diagnostic}\n\n"
        f"--B\nContent-Type: text/rfc822-headers\n\nMessage-ID: {original}\nTo: {recipient}\n\n",
        n=n,
    )


def sent_steps(practice: Practice, at: datetime) -> list[tuple[str, int]]:
    dispatcher = build_parts(practice.settings, practice.store).dispatcher
    done = asyncio.run(dispatcher.run_pass(at))
    return sorted((line.email, line.step) for line in done.sent)


def test_a_relayed_dsn_and_a_read_receipt_change_nothing(practice: Practice) -> None:
    practice.deliver(
        dsn(TOM, practice.ids[TOM], action="relayed", status="2.0.0", diagnostic="250 OK", n=1)
    )
    practice.deliver(
        report(
            "disposition-notification",
            "--B\nContent-Type: message/disposition-notification\n\n"
            f"Final-Recipient: rfc822; {ALMA}\n"
            f"Original-Message-ID: {practice.ids[ALMA]}\n"
            "Disposition: manual-action/MDN-sent-manually; displayed\n\n",
            n=2,
            sender=f"Alma Reyes <{ALMA}>",
        )
    )
    effects = dict(practice.sync())
    assert effects[ALMA] == "receipt: recorded, no effect"
    assert practice.stage(TOM) == practice.stage(ALMA) == "contacted"
    with practice.store.session() as session:
        assert suppressed_keys(session, [TOM, ALMA]) == set()
    # Both sequences go on: the follow-ups are sent when due.
    assert sent_steps(practice, T0 + timedelta(days=14)) == [(ALMA, 2), (TOM, 2)]


def test_a_german_out_of_office_pauses_until_its_return_date(practice: Practice) -> None:
    practice.deliver(
        reply(
            TOM,
            practice.ids[TOM],
            "Sehr geehrte Damen und Herren,\n\nich bin bis zum 13.03.2026 nicht im Büro und "
            "habe keinen Zugriff auf meine E-Mails.\n\nMit freundlichen Grüßen\nTom Beaulieu",
            subject="Abwesenheitsnotiz: Hello",
            extra="Auto-Submitted: auto-replied\nContent-Language: de-DE\n"
            "Content-Type: text/plain; charset=utf-8",
        )
    )
    # The test practice works every day: back on the 13th, written to from the 14th.
    assert practice.sync() == [(TOM, "paused until 2026-03-14")]
    # Tom's follow-up falls due on March 7 (5 days): it waits for his return.
    assert sent_steps(practice, datetime(2026, 3, 10, 15, 0, tzinfo=UTC)) == [(ALMA, 2)]
    assert sent_steps(practice, datetime(2026, 3, 13, 15, 0, tzinfo=UTC)) == []
    assert sent_steps(practice, datetime(2026, 3, 14, 15, 0, tzinfo=UTC)) == [(TOM, 2)]


def test_a_recipients_own_rejection_bounces_only_that_contact(practice: Practice) -> None:
    practice.deliver(
        dsn(
            TOM,
            practice.ids[TOM],
            action="failed",
            status="5.7.1",
            diagnostic=f"550 5.7.1 <{TOM}>: Recipient address rejected: Access denied "
            "(in reply to RCPT TO command)",
            n=3,
        )
    )
    assert practice.sync() == [(TOM, "bounced and suppressed (rejected_by_recipient)")]
    assert practice.stage(TOM) == "bounced"
    parts = build_parts(practice.settings, practice.store)
    assert parts.dispatcher.paused_reason() is None
    assert gather_status(practice.store, practice.settings, T0).paused_domains == {}
    assert sent_steps(practice, T0 + timedelta(days=14)) == [(ALMA, 2)]


SPAMHAUS = "554 5.7.1 Service unavailable; Client host [192.0.2.45] blocked using zen.spamhaus.org"
DMARC = (
    "550 5.7.26 Unauthenticated email from calmharbor.example.com is not accepted due to "
    "domain's DMARC policy"
)


def test_a_policy_bounce_pauses_only_that_domain(practice: Practice) -> None:
    practice.deliver(
        dsn(TOM, practice.ids[TOM], action="failed", status="5.7.1", diagnostic=SPAMHAUS, n=4)
    )
    assert practice.sync() == [(TOM, "policy bounce: sending to lm.example.org paused")]
    assert practice.stage(TOM) == "contacted"  # the address is fine: we are the problem
    status = gather_status(practice.store, practice.settings, T0)
    assert list(status.paused_domains) == ["lm.example.org"]
    assert status.sending_paused is None
    # Alma's domain still gets mail; Tom's waits.
    assert sent_steps(practice, T0 + timedelta(days=14)) == [(ALMA, 2)]
    # A second domain two weeks later: that domain pauses, not everything (24-hour window).
    practice.deliver(
        dsn(ALMA, practice.ids[ALMA], action="failed", status="5.7.26", diagnostic=DMARC, n=5)
    )
    assert practice.sync(T0 + timedelta(days=14, hours=1)) == [
        (ALMA, "policy bounce: sending to nb.example.com paused")
    ]
    assert build_parts(practice.settings, practice.store).dispatcher.paused_reason() is None
    assert resume_sending(practice.store, "LM.example.org") is not None
    assert sent_steps(practice, T0 + timedelta(days=20)) == [(TOM, 2)]


def test_policy_bounces_from_two_domains_in_a_day_pause_everything(practice: Practice) -> None:
    practice.deliver(
        dsn(TOM, practice.ids[TOM], action="failed", status="5.7.1", diagnostic=SPAMHAUS, n=4)
    )
    practice.deliver(
        dsn(ALMA, practice.ids[ALMA], action="failed", status="5.7.26", diagnostic=DMARC, n=5)
    )
    assert practice.sync() == [
        (TOM, "policy bounce: sending to lm.example.org paused"),
        (
            ALMA,
            "policy bounce: sending to nb.example.com paused; all sending paused (policy "
            "bounces from 2+ domains in 24 hours)",
        ),
    ]
    dispatcher = build_parts(practice.settings, practice.store).dispatcher
    assert "2 domains refused our mail" in (dispatcher.paused_reason() or "")
    assert sent_steps(practice, T0 + timedelta(days=14)) == []
    assert resume_sending(practice.store) is not None
    assert resume_sending(practice.store, "nb.example.com") is not None
    assert sent_steps(practice, T0 + timedelta(days=14)) == [(ALMA, 2)]


def test_a_complaint_suppresses_and_asks_for_attention(practice: Practice) -> None:
    practice.deliver(
        report(
            "feedback-report",
            "--B\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\n"
            f"User-Agent: ExampleFBL/1.0\nVersion: 1\nOriginal-Rcpt-To: {TOM}\n\n"
            f"--B\nContent-Type: message/rfc822\n\nMessage-ID: {practice.ids[TOM]}\n"
            f"To: {TOM}\nSubject: Hello\n\nHello\n",
            n=6,
            sender="fbl@feedback.example.net",
        )
    )
    assert practice.sync() == [(TOM, "complaint: do_not_contact and suppressed")]
    assert practice.stage(TOM) == "do_not_contact"
    with practice.store.session() as session:
        assert suppressed_keys(session, [TOM]) == {TOM}


def test_a_challenge_tells_the_therapist_and_changes_nothing(
    practice: Practice, smtp_sink: SmtpServer
) -> None:
    before = len(smtp_sink.received)
    practice.deliver(
        reply(
            TOM,
            practice.ids[TOM],
            "Your message is being held until you verify that you are a human. Please click "
            "the link below to confirm your address.\nhttps://verify.example.net/abc",
            subject="Please verify your email address",
            extra="Auto-Submitted: auto-replied",
        )
    )
    assert practice.sync() == [(TOM, "challenge: no stage change; you are told")]
    assert practice.stage(TOM) == "contacted"
    notices = smtp_sink.received[before:]
    assert [e.rcpt_tos for e in notices] == [["maya@calmharbor.example.com"]]
    text = notices[0].data.decode()
    assert "verification request" in text
    assert "verify.example.net" not in text  # who and what, never the sender's words


def test_a_guess_waits_for_review_and_a_decision_applies_it(
    practice: Practice, cli: Callable[..., Run]
) -> None:
    practice.deliver(
        "From: MAILER-DAEMON@lm.example.org\nTo: maya@calmharbor.example.com\n"
        "Subject: Undeliverable: Hello\nMessage-ID: <guess1@lm.example.org>\n"
        "Date: Mon, 02 Mar 2026 13:00:00 -0500\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="B"\n\n--B\nContent-Type: text/plain\n\n'
        f"Your message to {TOM} could not be delivered: no such user here.\n\n"
        f"--B\nContent-Type: text/rfc822-headers\n\nMessage-ID: {practice.ids[TOM]}\n"
        f"To: {TOM}\n\n--B--\n"
    )
    ((email, effect),) = practice.sync()
    assert email == TOM
    assert effect.startswith("held for review: a low-confidence hard bounce; nothing changed")
    assert practice.stage(TOM) == "contacted"
    (held,) = held_for_review(practice.store)
    assert held.message_key == "<guess1@lm.example.org>"

    listed = cli("inbox", "review")
    assert listed.exit_code == 0, listed.output
    assert "<guess1@lm.example.org>" in listed.stdout and TOM in listed.stdout
    decided = cli("inbox", "decide", "<guess1@lm.example.org>", "--as", "bounce", "--by", "dana")
    assert decided.exit_code == 0, decided.output
    assert "decided as bounce by dana: bounced and suppressed" in decided.stdout
    assert practice.stage(TOM) == "bounced"
    assert held_for_review(practice.store) == []
    again = cli("inbox", "decide", "<guess1@lm.example.org>", "--as", "reply")
    assert again.exit_code != 0
    assert "decided as bounce by dana" in again.output
    # Nothing still queued for Tom.
    assert all(e.state != "queued" for e in list_outbox(practice.store) if e.email == TOM)


def test_an_opt_out_inside_a_long_letter_waits_for_review(practice: Practice) -> None:
    """An opt-out inside a long letter is a guess: no stage changes and nothing is
    suppressed until the therapist decides; then the decision applies."""
    letter = " ".join(["We have discussed your offer at our staff meeting at some length."] * 12)
    practice.deliver(reply(TOM, practice.ids[TOM], f"{letter}\n\nPlease remove me from your list."))
    ((email, effect),) = practice.sync()
    assert email == TOM
    assert effect.startswith("held for review: a low-confidence unsubscribe; nothing changed")
    assert practice.stage(TOM) == "contacted"
    with practice.store.session() as session:
        assert suppressed_keys(session, [TOM]) == set()
    (held,) = held_for_review(practice.store)
    assert held.kind == "unsubscribe"
    effect = practice.processor.decide(held.message_key, "unsubscribe", by="dana", now=T0)
    assert effect == "unsubscribed and suppressed"
    assert practice.stage(TOM) == "unsubscribed"


def test_a_guessed_soft_bounce_is_recorded_and_not_counted(practice: Practice) -> None:
    """A report that names no code nor reason: a soft guess, which needs no decision and
    never adds up to bounced."""
    for n in range(4):
        practice.deliver(
            "From: MAILER-DAEMON@lm.example.org\nTo: maya@calmharbor.example.com\n"
            f"Subject: Undeliverable: Hello\nMessage-ID: <soft{n}@lm.example.org>\n"
            "Date: Mon, 02 Mar 2026 13:00:00 -0500\nMIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="B"\n\n--B\nContent-Type: text/plain\n\n'
            f"Your message to {TOM} could not be delivered.\n\n"
            f"--B\nContent-Type: text/rfc822-headers\n\nMessage-ID: {practice.ids[TOM]}\n"
            f"To: {TOM}\n\n--B--\n"
        )
    effects = [effect for _, effect in practice.sync()]
    assert effects == ["soft bounce recorded, not counted (low confidence, other)"] * 4
    assert practice.stage(TOM) == "contacted"
    assert held_for_review(practice.store) == []
