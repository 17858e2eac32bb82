"""Inbound effects: what a classified, matched message does to a contact, in one transaction.

reply -> ``replied`` (from new, contacted or no_response) and queued steps cancelled;
out_of_office -> paused until the return date plus one business day (else
``[inbound] out_of_office_pause_days``), stage unchanged; auto_reply -> recorded only, but one
saying the person left the organization pauses their follow-ups for 30 days and tells the
therapist (with the new address it gives); hard bounce -> ``bounced`` and suppressed; soft
bounce -> recorded, ``bounced`` after ``[inbound] soft_bounces_before_bounced``; a policy
bounce (the receiving side refuses us, not the address) pauses sending to that recipient's
domain, and all sending once two distinct domains did so within 24 hours; unsubscribe ->
``unsubscribed`` and suppressed; complaint (an abuse report) -> ``do_not_contact`` and
suppressed; receipt -> recorded only; challenge (prove you are a person) -> recorded, the
therapist told. Each is recorded as an inbound event with the message's Message-ID and date
(the contact's history), never its body. The folder's UID watermark is saved in the same
transaction, so a crash neither loses nor repeats an effect.

Nothing irreversible follows from a guess: a bounce, opt-out or complaint read with ``low``
confidence changes nothing, is marked for review, and the therapist is told; ``decide``
(``outreach inbox decide``) applies the kind they choose and records who chose it.

A message whose handling fails is never retried forever, blocking the ones behind it: if the
rules failed, its built-in effect is applied without them; else it is recorded
``unprocessable`` (the error's class, never its text, which could quote the message), its
watermark saved, and said once in the log. Only a database that fails (OperationalError) is
raised, for the source to try again.
"""

from __future__ import annotations

import hashlib
import logging
import shlex
import traceback
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, object_session

from outreach.config import Settings
from outreach.domain.business_days import make_calendar
from outreach.domain.classify import (
    AUTO_REPLY,
    BOUNCE,
    CHALLENGE,
    COMPLAINT,
    HIGH,
    LEFT_ORGANIZATION,
    LOW,
    OUT_OF_OFFICE,
    RECEIPT,
    REPLY,
    UNSUBSCRIBE,
    Classification,
    Failed,
    classify,
    printable,
)
from outreach.domain.fields import email_key
from outreach.domain.pipeline import (
    BOUNCED,
    CONTACTED,
    DO_NOT_CONTACT,
    NEW,
    NO_RESPONSE,
    REPLIED,
    UNSUBSCRIBED,
)
from outreach.domain.states import InboundKind, OutboxState
from outreach.errors import ConfigError, TemplateProblem
from outreach.mail.abc import OpenSmtp, Watermark
from outreach.mail.compose import OutboundMessage
from outreach.mail.notices import readable_effect, source_notice
from outreach.services.contacts import move_contact
from outreach.services.matching import Match, match_message
from outreach.services.workflow import RuleRun, answered, run_rules, send_notices, source_of
from outreach.store.database import Store
from outreach.store.ledger import WAITING, pause_domain, pause_sending, suppress
from outreach.store.models import ContactRow, InboundEventRow, MailboxStateRow, OutboxRow

log = logging.getLogger("outreach.inbound")  # pinned: journal lines show it
UNPROCESSABLE = InboundKind.UNPROCESSABLE
KEY_LENGTH = 255  # InboundEventRow.message_key's column
# Kinds whose effect can't be undone: read with low confidence, they wait for the therapist.
IRREVERSIBLE = frozenset({BOUNCE, UNSUBSCRIBE, COMPLAINT})
PENDING = "pending"
DECIDED = "decided"
LEFT_PAUSE_DAYS = 30  # follow-ups held for someone who left, while the therapist looks
# Kinds that are only recorded, and what their event says.
_RECORDED: dict[str, str] = {AUTO_REPLY: "recorded", RECEIPT: "receipt: recorded, no effect"}
# What the therapist may decide a held message is (bounce classes spelled out).
DECISIONS = (
    "reply",
    "out_of_office",
    "auto_reply",
    "bounce",
    "soft_bounce",
    "policy_bounce",
    "unsubscribe",
    "complaint",
    "receipt",
    "ignore",
)


@dataclass(frozen=True)
class InboundResult:
    """What one inbound message was and did."""

    message_key: str
    kind: str
    contact: str | None
    effect: str
    reasons: tuple[str, ...]
    seen_before: bool = False
    move_to: str | None = None  # a rule asks for the message to be filed in this folder


class InboundProcessor:
    """Classify, match and apply inbound messages for one practice: the ``MessageHandler`` an
    inbox source hands each new message to."""

    def __init__(self, store: Store, settings: Settings, *, smtp: OpenSmtp) -> None:
        self.store = store
        self.settings = settings
        self.smtp = smtp  # for the therapist's notices
        self.pipeline = settings.the_pipeline
        self.zone = ZoneInfo(settings.practice.timezone)
        sending = settings.sending
        self.calendar = make_calendar(
            sending.days, sending.holidays_country, sending.holidays_subdivision
        )

    def handle(
        self, raw: bytes, *, folder: str, now: datetime, watermark: Watermark | None = None
    ) -> InboundResult:
        """Handle one message; never raises for the message's content (see the module)."""
        found = classify(
            raw,
            received=now.astimezone(self.zone).date(),
            authserv_id=self.settings.inbound.authserv_id,
        )
        key = message_key(found, raw)
        at = _At(folder, now, watermark)
        try:
            return self._handle(found, key, at)
        except Exception as exc:
            if _database_trouble(exc):
                raise  # the database's, not the message's: the source reads it again
            if isinstance(exc, IntegrityError) and self._already_handled(key):
                # Another reader (the daemon and an `inbox sync` by hand) got there first.
                return InboundResult(
                    key, found.kind, None, "seen before: no effect", found.reasons, seen_before=True
                )
            error = exc
        if self.settings.rules:
            # A rule's action (a notice naming the contact) may trip on the contact's own
            # data; that must not cost the message its built-in effect.
            try:
                result = self._handle(found, key, at, rules_failed=type(error).__name__)
            except Exception as exc:
                if _database_trouble(exc):
                    raise
                error = exc
            else:
                log.error("inbound %s: rules not run (%s, %s)", key, *_described(error))
                return result
        return self._unprocessable(found, key, at, error)

    def _already_handled(self, key: str) -> bool:
        with self.store.session() as session:
            return _seen(session, key)

    def watermark(self, folder: str) -> Watermark | None:
        """The last message handled in ``folder``, if any."""
        with self.store.session() as session:
            row = session.get(MailboxStateRow, folder)
            return Watermark(folder, row.uidvalidity, row.last_uid) if row else None

    def advance(self, watermark: Watermark, now: datetime) -> None:
        """Move a folder's watermark past UIDs that no longer exist (expunged or moved away), so
        a folder emptied by hand does not look like it holds unread mail forever."""
        with self.store.session() as session:
            _save_watermark(session, watermark, now)
            session.commit()

    def _handle(
        self, found: Classification, key: str, at: _At, *, rules_failed: str | None = None
    ) -> InboundResult:
        now = at.now
        notices: list[OutboundMessage] = []
        moves: list[str] = []
        review: str | None = None
        with self.store.session() as session:
            if at.watermark is not None:
                _save_watermark(session, at.watermark, now)
            if _seen(session, key):
                return InboundResult(
                    key, found.kind, None, "seen before: no effect", found.reasons, seen_before=True
                )
            match = match_message(session, found, self.settings.sender.from_address)
            contact = session.get(ContactRow, match.contact_id) if match.contact_id else None
            if match.ours:
                effect = f"no effect: {match.how}"
            elif contact is None:
                effect = "no effect: no contact matches"
            elif not match.trusted:
                effect = f"flagged, no effect: {match.how}"
            else:
                before, paused = contact.stage, contact.paused_until
                applied = self._apply(session, found, contact, key, now)
                effect, notices = applied.effect, list(applied.notices)
                review = PENDING if applied.held else None
                if rules_failed:
                    effect += f"; rules not run ({rules_failed})"
                elif applied.held:
                    effect += "; rules not run until you decide"
                else:
                    did = self._did(before, paused, contact, applied.effect)
                    runs = [self._rules(session, found, contact, key, now, on=found.kind, did=did)]
                    if contact.stage != before:
                        runs.append(
                            self._rules(
                                session, found, contact, key, now, on="stage_changed", did=did
                            )
                        )
                    for run in runs:
                        effect += run.summary
                        notices += run.notices
                        moves += [run.move_to] if run.move_to else []
            effect = printable(effect, 2000)
            session.add(
                InboundEventRow(
                    message_key=key,
                    folder=at.folder,
                    kind=found.kind,
                    contact_id=contact.id if contact else None,
                    trusted=match.trusted,
                    sender_domain=_domain(found),
                    sent_at=found.sent_at,
                    received_at=now,
                    step_index=match.step_index,
                    detail=_detail(found, match),
                    effect=effect,
                    confidence=found.confidence,
                    review=review,
                )
            )
        # Metadata only: the Message-ID, kind and effect; never the body.
        log.info("inbound %s: %s; %s", key, found.kind, effect)
        try:
            send_notices(self.smtp, notices, key)  # after the commit: SMTP never holds the DB
        except Exception as exc:  # the effects are committed; a notice is not worth a retry
            log.error("inbound %s: notices not sent (%s, %s)", key, *_described(exc))
        return InboundResult(
            key,
            found.kind,
            contact.email if contact else None,
            effect,
            found.reasons,
            move_to=moves[-1] if moves else None,
        )

    def _unprocessable(
        self, found: Classification, key: str, at: _At, error: Exception
    ) -> InboundResult:
        """Record the message with no effect and move past it; the therapist reads it."""
        name, where = _described(error)
        effect = f"unprocessable ({name}): recorded, no effect; read it in your mail program"
        with self.store.session() as session:
            if at.watermark is not None:
                _save_watermark(session, at.watermark, at.now)
            if not _seen(session, key):
                session.add(
                    InboundEventRow(
                        message_key=key,
                        folder=at.folder,
                        kind=UNPROCESSABLE,
                        sender_domain=_domain(found),
                        received_at=at.now,
                        detail={
                            "error": name,
                            "where": where,
                            "message_id": (found.message_id or "")[:1000] or None,
                        },
                        effect=effect,
                    )
                )
        # Once, at error level, without the traceback: its text could quote the message.
        log.error(
            "inbound %s: unprocessable (%s, %s): recorded with no effect; the messages after it "
            "are read",
            key,
            name,
            where,
        )
        return InboundResult(key, UNPROCESSABLE, None, effect, (f"handling failed: {name}",))

    def _apply(
        self, session: Session, found: Classification, contact: ContactRow, key: str, now: datetime
    ) -> _Applied:
        if found.confidence == LOW and found.kind == BOUNCE:
            failure = _failure_for(found, contact)
            if failure.bounce_class == "soft":
                # A guessed soft bounce changes nothing and is not counted toward bounced;
                # it would only ask the therapist about something that needs no decision.
                return _Applied(
                    f"soft bounce recorded, not counted (low confidence, {failure.reason})"
                )
        if found.confidence == LOW and found.kind in IRREVERSIBLE:
            # No stage change either, not even to replied: the therapist reads it first.
            return self._hold(found, contact, key)
        return self._effect(session, found, contact, key, now)

    def _effect(
        self, session: Session, found: Classification, contact: ContactRow, key: str, now: datetime
    ) -> _Applied:
        """The built-in effect of a reading outreach is sure of."""
        when = f"{found.sent_at:%Y-%m-%d %H:%M}" if found.sent_at else "undated"
        if found.kind == REPLY:
            if contact.stage in (NEW, CONTACTED, NO_RESPONSE):
                move_contact(contact, self.pipeline, REPLIED, now, f"reply {key} of {when}")
                cancelled = _cancel_waiting(session, contact.id, now)
                return _Applied(f"{contact.stage}; {cancelled} queued step(s) cancelled")
            return _Applied(f"recorded (already {contact.stage})")
        if found.kind == UNSUBSCRIBE:
            move_contact(contact, self.pipeline, UNSUBSCRIBED, now, f"opt-out {key} of {when}")
            suppress(session, contact.email_key, f"opt-out {key}", now)
            _cancel_waiting(session, contact.id, now)
            return _Applied("unsubscribed and suppressed")
        if found.kind == COMPLAINT:
            return self._complaint(session, found, contact, key, now, when)
        if found.kind == OUT_OF_OFFICE:
            until = self._pause_until(found, now)
            if contact.paused_until is None or contact.paused_until < until:
                contact.paused_until = until
            contact.next_check_at = contact.paused_until
            return _Applied(f"paused until {contact.paused_until:%Y-%m-%d}")
        if found.kind == BOUNCE:
            return self._bounce(session, found, contact, key, now)
        if found.kind == AUTO_REPLY and found.reason == LEFT_ORGANIZATION:
            return self._left(found, contact, key, now)
        if found.kind == CHALLENGE:
            return self._challenge(found, contact, key)
        return _Applied(_RECORDED.get(found.kind, "no effect: unclassifiable"))

    def _complaint(
        self,
        session: Session,
        found: Classification,
        contact: ContactRow,
        key: str,
        now: datetime,
        when: str,
    ) -> _Applied:
        reason = f"abuse complaint {key} of {when}"
        move_contact(contact, self.pipeline, DO_NOT_CONTACT, now, reason)
        suppress(session, contact.email_key, reason, now)
        _cancel_waiting(session, contact.id, now)
        short = source_of(self.settings, contact).short
        happened = [
            f"{short} (or their provider) reported our email as abuse or spam.",
            "Many complaints hurt the practice's ability to reach anyone; review what goes "
            "out to this segment.",
        ]
        done = [
            "moved them to do_not_contact and suppressed their address: nothing more goes to it"
        ]
        return _Applied(
            "complaint: do_not_contact and suppressed",
            self._notices(contact, found, "complaint", happened, done),
        )

    def _challenge(self, found: Classification, contact: ContactRow, key: str) -> _Applied:
        short = source_of(self.settings, contact).short
        happened = [
            f"A challenge-response system holds our email to {short} until someone proves "
            "to be a person (a verification request: usually a link to click or a reply).",
            "Open the message in your mail program and complete it if you want them to "
            "receive our mail.",
        ]
        done = ["nothing: their stage is unchanged"]
        return _Applied(
            "challenge: no stage change; you are told",
            self._notices(contact, found, "challenge", happened, done),
        )

    def _hold(self, found: Classification, contact: ContactRow, key: str) -> _Applied:
        """A guess at something irreversible: nothing changes until the therapist decides."""
        what = found.kind if found.kind != BOUNCE else f"{found.bounce_class or 'soft'} bounce"
        short = source_of(self.settings, contact).short
        happened = [
            f"A message about {short} looks like {_a(what.replace('_', ' '))}, but outreach is "
            "not sure, so it changed nothing.",
            f"Why it thinks so: {'; '.join(found.reasons)[:500]}.",
            "Read it in your mail program, then tell outreach what it is (the review lists it "
            "with its key and the choices).",
        ]
        commands = ["outreach inbox review", "outreach inbox decide KEY --as KIND"]
        return _Applied(
            f"held for review: a low-confidence {what}; nothing changed",
            self._notices(
                contact, found, "review", happened, ["nothing yet: it waits for you"], commands
            ),
            held=True,
        )

    def _left(
        self, found: Classification, contact: ContactRow, key: str, now: datetime
    ) -> _Applied:
        """Someone who left the organization: follow-ups wait while the therapist looks."""
        until = now + timedelta(days=LEFT_PAUSE_DAYS)
        if contact.paused_until is None or contact.paused_until < until:
            contact.paused_until = until
        contact.next_check_at = contact.paused_until
        where = f" It gives a new address: {found.new_address}." if found.new_address else ""
        short = source_of(self.settings, contact).short
        happened = [f"An automatic answer says {short} no longer works there.{where}"]
        done = [f"paused their follow-ups until {self._day(contact.paused_until)}"]
        email = shlex.quote(contact.email)
        commands = [f"outreach contacts show {email}"]
        if found.new_address:
            new_address = shlex.quote(found.new_address)
            commands.append(f"outreach contacts add {new_address} --segment {contact.segment}")
        commands.append(f"outreach contacts remove {email}")
        new = f" (new address {found.new_address})" if found.new_address else ""
        return _Applied(
            f"left the organization{new}: paused until {contact.paused_until:%Y-%m-%d}; "
            "needs your attention",
            self._notices(contact, found, "left", happened, done, commands),
        )

    def _day(self, moment: datetime) -> str:
        local = moment.astimezone(self.zone)
        return f"{local:%a} {local.day} {local:%b %Y}"

    def _did(
        self, stage: str, paused: datetime | None, contact: ContactRow, effect: str
    ) -> list[str]:
        """What a message's built-in effect did, in words for a rule's notice."""
        did = []
        if contact.stage != stage:
            did.append(f"moved them from {stage} to {contact.stage}")
            if contact.stage in (BOUNCED, UNSUBSCRIBED, DO_NOT_CONTACT):
                did.append("suppressed their address: nothing more goes to it")
            elif contact.stage == REPLIED:
                did.append("stopped their follow-ups")
        if contact.paused_until is not None and contact.paused_until != paused:
            did.append(f"paused their emails until {self._day(contact.paused_until)}")
        return did or [readable_effect(effect)]

    def _notices(
        self,
        contact: ContactRow,
        found: Classification,
        kind: str,
        happened: list[str],
        done: list[str],
        commands: list[str] | None = None,
    ) -> tuple[OutboundMessage, ...]:
        """A notice to the therapist: who and what, never the message's text."""
        session = object_session(contact)
        try:
            return (
                source_notice(
                    self.settings,
                    kind=kind,
                    source=source_of(self.settings, contact),
                    happened=happened,
                    answered=answered(session, self.settings, contact, found.refers_to)
                    if session is not None
                    else None,
                    done=done,
                    commands=commands or [f"outreach contacts show {shlex.quote(contact.email)}"],
                    refers_to=found.refers_to[-1] if found.refers_to else None,
                    stage=contact.stage,
                ),
            )
        except TemplateProblem:  # a header a sender crafted: the effect still applies
            return ()

    def _rules(
        self,
        session: Session,
        found: Classification,
        contact: ContactRow,
        key: str,
        now: datetime,
        *,
        on: str,
        did: list[str],
    ) -> RuleRun:
        return run_rules(
            session,
            self.settings,
            self.pipeline,
            contact,
            on=on,
            key=key,
            now=now,
            text=found.new_text,
            sender_domain=(found.sender or "").rpartition("@")[2],
            refers_to=found.refers_to,
            did=did,
        )

    def _pause_until(self, found: Classification, now: datetime) -> datetime:
        if found.return_date is not None:
            day = self.calendar.add_business_days(found.return_date, 1)
            return datetime.combine(day, time(0), self.zone)
        return now + timedelta(days=self.settings.inbound.out_of_office_pause_days)

    def _bounce(
        self, session: Session, found: Classification, contact: ContactRow, key: str, now: datetime
    ) -> _Applied:
        failure = _failure_for(found, contact)
        reason = f"bounce {key}: {failure.status or failure.bounce_class} {failure.reason}"
        if failure.bounce_class == "policy":
            return self._policy(found, failure, contact, key, now, session)
        if failure.bounce_class == "soft":
            earlier = (
                session.scalar(
                    select(func.count())
                    .select_from(InboundEventRow)
                    .where(
                        InboundEventRow.contact_id == contact.id,
                        InboundEventRow.kind == BOUNCE,
                        InboundEventRow.trusted.is_(True),
                        # Sure ones, and guesses the therapist confirmed as soft bounces.
                        or_(
                            and_(
                                InboundEventRow.review.is_(None),
                                InboundEventRow.confidence == HIGH,
                            ),
                            InboundEventRow.decided_as == "soft_bounce",
                        ),
                    )
                )
                or 0
            )
            if earlier + 1 < self.settings.inbound.soft_bounces_before_bounced:
                return _Applied(f"soft bounce {earlier + 1} recorded ({failure.reason})")
        move_contact(contact, self.pipeline, BOUNCED, now, reason)
        suppress(session, contact.email_key, reason, now)
        _cancel_waiting(session, contact.id, now)
        return _Applied(f"bounced and suppressed ({failure.reason})")

    def _policy(
        self,
        found: Classification,
        failure: Failed,
        contact: ContactRow,
        key: str,
        now: datetime,
        session: Session,
    ) -> _Applied:
        """The receiving side refuses us (reputation, authentication), not the address:
        sending to that domain pauses; to everyone once two domains did so within a day."""
        domain = contact.email.rpartition("@")[2].lower()
        why = (
            f"{now:%Y-%m-%d %H:%M} UTC: {domain} refused our mail to {contact.email} for "
            f"policy ({failure.status or 'no status'}, {failure.reason})"
        )
        domains = pause_domain(session, domain, why, now)
        short = source_of(self.settings, contact).short
        happened = [
            f"{domain} refused our email to {short} for policy "
            f"({failure.status or 'no status'}, {failure.reason}): the receiving side refuses "
            "the practice's mail, not this address.",
            "Check the practice's SPF, DKIM and DMARC and its sending reputation, then resume.",
        ]
        done = [f"paused sending to {domain}; their stage is unchanged"]
        commands = [f"outreach sending resume --domain {domain}"]
        effect = f"policy bounce: sending to {domain} paused"
        if domains >= 2:
            everything = (
                f"{now:%Y-%m-%d %H:%M} UTC: {domains} domains refused our mail for policy "
                f"within 24 hours (the latest {domain}, {failure.status or 'no status'}); "
                "check SPF/DKIM/DMARC and reputation, then `outreach sending resume`"
            )
            pause_sending(session, everything, now, keep_first=True)
            log.critical("sending paused: %s", everything)
            done.append("paused ALL sending: two or more domains did so within 24 hours")
            commands.append("outreach sending resume")
            effect += "; all sending paused (policy bounces from 2+ domains in 24 hours)"
        else:
            log.warning("sending to %s paused: %s", domain, why)
        return _Applied(effect, self._notices(contact, found, "policy", happened, done, commands))

    def decide(self, key: str, kind: str, *, by: str, now: datetime) -> str:
        """Apply the therapist's reading of a message held for review; what it did. Raises
        ConfigError naming what is wrong (no such message, not held, no contact)."""
        if kind not in DECISIONS:
            raise ConfigError([f"--as {kind!r}: choose one of {', '.join(DECISIONS)}."])
        with self.store.session() as session:
            event = session.scalars(
                select(InboundEventRow).where(InboundEventRow.message_key == key)
            ).first()
            if event is None:
                raise ConfigError([f"No inbound message {key} is recorded."])
            if event.review != PENDING:
                raise ConfigError(
                    [f"{key} is not waiting for review ({_decided(event) or 'never held'})."]
                )
            contact = session.get(ContactRow, event.contact_id) if event.contact_id else None
            if contact is None:
                raise ConfigError([f"{key}'s contact no longer exists; nothing to apply."])
            applied = (
                _Applied("no effect")
                if kind == "ignore"
                else self._apply(session, _decided_as(event, kind, contact), contact, key, now)
            )
            event.review, event.decided_as = DECIDED, kind
            event.decided_by, event.decided_at = printable(by, 200), now
            event.effect = printable(
                f"{event.effect}; decided as {kind} by {by}: {applied.effect}", 2000
            )
        log.info("inbound %s: decided as %s by %s: %s", key, kind, by, applied.effect)
        send_notices(self.smtp, applied.notices, key)
        return applied.effect


@dataclass(frozen=True)
class Held:
    """A message waiting for the therapist's decision."""

    message_key: str
    received_at: datetime
    kind: str  # what outreach read it as
    contact: str | None
    detail: dict[str, object]
    effect: str


def held_for_review(store: Store) -> list[Held]:
    """Messages read with low confidence as something irreversible, oldest first."""
    with store.session() as session:
        rows = session.execute(
            select(InboundEventRow, ContactRow.email)
            .outerjoin(ContactRow, InboundEventRow.contact_id == ContactRow.id)
            .where(InboundEventRow.review == PENDING)
            .order_by(InboundEventRow.received_at, InboundEventRow.id)
        ).all()
        return [
            Held(row.message_key, row.received_at, row.kind, email, dict(row.detail), row.effect)
            for row, email in rows
        ]


@dataclass(frozen=True)
class _Applied:
    """What an inbound message did: the effect to record, notices for the therapist, and
    whether it waits for the therapist's decision."""

    effect: str
    notices: tuple[OutboundMessage, ...] = ()
    held: bool = False


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def _failure_for(found: Classification, contact: ContactRow) -> Failed:
    """The bounce's failure for this contact's address (a report may name several)."""
    for failure in found.failed:
        if email_key(failure.address) == contact.email_key:
            return failure
    if found.failed:
        return found.failed[0]
    return Failed(contact.email_key, "soft", "other", None, LOW)


def _decided(event: InboundEventRow) -> str:
    if event.review != DECIDED:
        return ""
    return f"decided as {event.decided_as} by {event.decided_by} on {event.decided_at:%Y-%m-%d}"


def _decided_as(event: InboundEventRow, kind: str, contact: ContactRow) -> Classification:
    """The classification a therapist's decision stands for, with high confidence."""
    detail = event.detail or {}
    reasons = ("decided by the therapist",)
    if kind in ("bounce", "soft_bounce", "policy_bounce"):
        klass = {"bounce": "hard", "soft_bounce": "soft", "policy_bounce": "policy"}[kind]
        failed = Failed(
            contact.email_key,
            klass,
            str(detail.get("reason") or "other"),
            detail.get("status"),
            HIGH,
        )
        return Classification(BOUNCE, reasons, message_id=event.message_key, failed=(failed,))
    return Classification(InboundKind(kind), reasons, message_id=event.message_key)


@dataclass(frozen=True)
class _At:
    """Where and when a message was read."""

    folder: str
    now: datetime
    watermark: Watermark | None


def message_key(found: Classification, raw: bytes) -> str:
    """The key a message is recorded under: its Message-ID, else a digest of its bytes; a
    Message-ID longer than the column is replaced by its digest (the same every time)."""
    if found.message_id and len(found.message_id) <= KEY_LENGTH:
        return found.message_id
    source = found.message_id.encode("utf-8", "surrogatepass") if found.message_id else raw
    return f"<sha256-{hashlib.sha256(source).hexdigest()[:48]}>"


def _seen(session: Session, key: str) -> bool:
    row = session.scalar(select(InboundEventRow.id).where(InboundEventRow.message_key == key))
    return row is not None


def _domain(found: Classification) -> str:
    # An RFC 1035 domain has at most 253 characters; a longer one is cut to the column.
    return printable((found.sender or "").rpartition("@")[2], 255)


def _described(error: Exception) -> tuple[str, str]:
    """An error's class and the line that raised it: never its text, which may quote the
    message (a parser's complaint, a value that was refused)."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f"{frames[-1].name} in {Path(frames[-1].filename).name}:{frames[-1].lineno}"
    return type(error).__name__, where


def _cancel_waiting(session: Session, contact_id: int, now: datetime) -> int:
    result = session.execute(
        update(OutboxRow)
        .where(OutboxRow.contact_id == contact_id, OutboxRow.state.in_(WAITING))
        .values(
            state=OutboxState.CANCELLED,
            updated_at=now,
            last_error="cancelled by an inbound message",
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def _save_watermark(session: Session, mark: Watermark, now: datetime) -> None:
    row = session.get(MailboxStateRow, mark.folder)
    if row is None:
        session.add(
            MailboxStateRow(
                folder=mark.folder, uidvalidity=mark.uidvalidity, last_uid=mark.uid, updated_at=now
            )
        )
    elif row.uidvalidity != mark.uidvalidity or mark.uid > row.last_uid:
        row.uidvalidity, row.last_uid, row.updated_at = mark.uidvalidity, mark.uid, now


def _detail(found: Classification, match: Match) -> dict[str, object]:
    detail: dict[str, object] = {
        "how": printable(match.how, 1000),
        "reasons": [printable(reason, 300) for reason in found.reasons],
    }
    if found.return_date:
        detail["return_date"] = found.return_date.isoformat()
    if found.kind == BOUNCE:
        detail.update(
            recipient=found.recipient,
            recipients=[f.address for f in found.failed][:20],
            status=found.status,
            klass=found.bounce_class,
            reason=found.reason,
        )
    elif found.reason:
        detail["reason"] = found.reason
    if found.new_address:
        detail["new_address"] = found.new_address
    if found.confidence != HIGH:
        detail["confidence"] = found.confidence
    if found.auth_failure:
        detail["authentication"] = found.auth_failure
    return detail


def _database_trouble(exc: BaseException) -> bool:
    """Whether a failure is the database's (down, a lost connection), not the message's: then
    nothing is recorded and the source reads the message again later."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
