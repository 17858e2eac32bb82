"""Inbound effects: what a classified, matched message does to a contact, in one transaction.

reply -> ``replied`` (from new, contacted or no_response) and queued steps cancelled;
out_of_office -> paused until the return date plus one business day (else
``[inbound] out_of_office_pause_days``), stage unchanged; auto_reply -> recorded only;
hard bounce -> ``bounced`` and suppressed; soft bounce -> recorded, ``bounced`` after
``[inbound] soft_bounces_before_bounced``; a policy bounce (5.7.x) pauses all sending;
unsubscribe -> ``unsubscribed`` and suppressed. Each is recorded as an inbound event with the
message's Message-ID and date (the contact's history), never its body. The folder's UID
watermark is saved in the same transaction, so a crash neither loses nor repeats an effect.

A message whose handling fails is never retried forever, blocking the ones behind it: if the
rules failed, its built-in effect is applied without them; else it is recorded
``unprocessable`` (the error's class, never its text, which could quote the message), its
watermark saved, and said once in the log. Only a database that fails (OperationalError) is
raised, for the source to try again.
"""

from __future__ import annotations

import hashlib
import logging
import traceback
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from outreach.config import Settings
from outreach.domain.business_days import make_calendar
from outreach.domain.classify import (
    AUTO_REPLY,
    BOUNCE,
    OUT_OF_OFFICE,
    REPLY,
    UNSUBSCRIBE,
    Classification,
    classify,
    printable,
)
from outreach.domain.pipeline import BOUNCED, CONTACTED, NEW, NO_RESPONSE, REPLIED, UNSUBSCRIBED
from outreach.domain.states import InboundKind, OutboxState
from outreach.mail.abc import OpenSmtp, Watermark
from outreach.mail.compose import OutboundMessage
from outreach.services.contacts import move_contact
from outreach.services.matching import Match, match_message
from outreach.services.workflow import RuleRun, run_rules, send_notices
from outreach.store.database import Store
from outreach.store.ledger import WAITING, pause_sending, suppress
from outreach.store.models import ContactRow, InboundEventRow, MailboxStateRow, OutboxRow

log = logging.getLogger("outreach.inbound")  # pinned: journal lines show it
UNPROCESSABLE = InboundKind.UNPROCESSABLE
KEY_LENGTH = 255  # InboundEventRow.message_key's column


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
                before = contact.stage
                effect = self._apply(session, found, contact, key, now)
                if rules_failed:
                    effect += f"; rules not run ({rules_failed})"
                else:
                    runs = [self._rules(session, found, contact, key, now, on=found.kind)]
                    if contact.stage != before:
                        runs.append(
                            self._rules(session, found, contact, key, now, on="stage_changed")
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
    ) -> str:
        when = f"{found.sent_at:%Y-%m-%d %H:%M}" if found.sent_at else "undated"
        if found.kind == REPLY:
            if contact.stage in (NEW, CONTACTED, NO_RESPONSE):
                move_contact(contact, self.pipeline, REPLIED, now, f"reply {key} of {when}")
                cancelled = _cancel_waiting(session, contact.id, now)
                return f"{contact.stage}; {cancelled} queued step(s) cancelled"
            return f"recorded (already {contact.stage})"
        if found.kind == UNSUBSCRIBE:
            move_contact(contact, self.pipeline, UNSUBSCRIBED, now, f"opt-out {key} of {when}")
            suppress(session, contact.email_key, f"opt-out {key}", now)
            _cancel_waiting(session, contact.id, now)
            return "unsubscribed and suppressed"
        if found.kind == OUT_OF_OFFICE:
            until = self._pause_until(found, now)
            if contact.paused_until is None or contact.paused_until < until:
                contact.paused_until = until
            contact.next_check_at = contact.paused_until
            return f"paused until {contact.paused_until:%Y-%m-%d}"
        if found.kind == BOUNCE:
            return self._bounce(session, found, contact, key, now)
        if found.kind == AUTO_REPLY:
            return "recorded"
        return "no effect: unclassifiable"

    def _rules(
        self,
        session: Session,
        found: Classification,
        contact: ContactRow,
        key: str,
        now: datetime,
        *,
        on: str,
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
        )

    def _pause_until(self, found: Classification, now: datetime) -> datetime:
        if found.return_date is not None:
            day = self.calendar.add_business_days(found.return_date, 1)
            return datetime.combine(day, time(0), self.zone)
        return now + timedelta(days=self.settings.inbound.out_of_office_pause_days)

    def _bounce(
        self, session: Session, found: Classification, contact: ContactRow, key: str, now: datetime
    ) -> str:
        reason = f"bounce {key}: {found.status or found.bounce_class}"
        if found.bounce_class == "policy":
            text = (
                f"{now:%Y-%m-%d %H:%M} UTC: a policy bounce ({found.status}) for "
                f"{contact.email}; check SPF/DKIM and reputation, then `outreach sending "
                "resume`"
            )
            pause_sending(session, text, now, keep_first=True)
            log.critical("sending paused: %s", text)
            return "policy bounce: all sending paused"
        if found.bounce_class == "soft":
            earlier = (
                session.scalar(
                    select(func.count())
                    .select_from(InboundEventRow)
                    .where(
                        InboundEventRow.contact_id == contact.id,
                        InboundEventRow.kind == BOUNCE,
                        InboundEventRow.trusted.is_(True),
                    )
                )
                or 0
            )
            if earlier + 1 < self.settings.inbound.soft_bounces_before_bounced:
                return f"soft bounce {earlier + 1} recorded"
        move_contact(contact, self.pipeline, BOUNCED, now, reason)
        suppress(session, contact.email_key, reason, now)
        _cancel_waiting(session, contact.id, now)
        return "bounced and suppressed"


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
        detail.update(recipient=found.recipient, status=found.status, klass=found.bounce_class)
    if found.auth_failure:
        detail["authentication"] = found.auth_failure
    return detail


def _database_trouble(exc: BaseException) -> bool:
    """Whether a failure is the database's (down, a lost connection), not the message's: then
    nothing is recorded and the source reads the message again later."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
