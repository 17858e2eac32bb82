"""One dispatch pass: find what is due, pace it, claim it in the ledger, send it, record it.

The order of each send is what makes "never twice" hold: the ledger row (with its Message-ID)
is committed in state ``sending`` before the SMTP transaction starts and updated after it. A
row found in ``sending`` at the start of a pass was interrupted (crash, kill): it is never
resent blindly, but looked up in the Sent folder when copies are kept there, else marked
``unknown`` for the therapist to resolve (``outreach outbox resolve``).

A contact whose message can't be rendered only because it lacks a field a template uses
(``contact.first_name``) is marked ``needs_data`` with that field and skipped; everyone else
is sent. Each later pass tries it again first, and the first render that works clears the
mark. A template's own error (syntax, a variable that exists for nobody) skips the message
and is a problem of the pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from logging import ERROR, INFO, WARNING

from sqlalchemy import select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from outreach.config import Settings
from outreach.domain.fields import full_name
from outreach.domain.pacing import DueSend, SendLog, next_slot, schedule
from outreach.domain.pipeline import BOUNCED, EXIT_STAGES, NEW
from outreach.domain.sequencing import (
    ACTIVE_STAGES,
    NURTURE_STEP_BASE,
    REPLY_STEP_BASE,
    step_label,
)
from outreach.domain.states import OutboxState
from outreach.errors import MailServerUnusable, TemplateProblem
from outreach.mail.abc import Delivery, OpenSmtp, Outcome, SmtpTransport
from outreach.mail.compose import (
    OutboundMessage,
    build_message,
    new_message_id,
    template_context,
    thread_for,
)
from outreach.mail.sent_folder import SentFolder
from outreach.mail.templates import MissingContactField, TemplateSet
from outreach.services.contacts import move_contact, template_fields
from outreach.services.due import Candidate, DueSteps, suppressed_keys
from outreach.services.template_check import ContactData
from outreach.store.database import Store, in_chunks
from outreach.store.instance import DispatchLock
from outreach.store.ledger import (
    START,
    WAITING,
    add_queued,
    lift_ended_pause,
    mark_sent,
    pause_sending,
    paused_domains,
    queued_row,
    sending_paused,
    suppress,
    thread_rows,
)
from outreach.store.models import ContactRow, OutboxRow

log = logging.getLogger("outreach.dispatch")  # pinned: journal lines show it
LOCK_RETRY_SECONDS = 0.2
# While due steps wait for their window (a weekend, a cap) and nothing changes, passes don't
# read them all again; once this long passes, one does anyway.
QUIET_RECHECK = timedelta(minutes=30)
SEND_DUE_WAIT_SECONDS = 120.0  # a send-due by hand waits this long for the daemon's pass
CLAIM_CHUNK = 25  # steps claimed per transaction, built while the senders send the previous


@dataclass(frozen=True)
class Claim:
    """A step with its ledger row and the exact message it will send."""

    outbox_id: int
    candidate: Candidate
    message: OutboundMessage
    maybe_new: bool = True  # the contact was still ``new`` when claimed


@dataclass(frozen=True)
class Quiet:
    """Due steps are waiting for a slot (the window, a cap) that opens at ``until`` at the
    earliest; ``mark`` is what the store looked like then (``DueSteps.backlog_mark``)."""

    until: datetime
    mark: tuple[object, ...]
    since: datetime


@dataclass(frozen=True)
class SendLine:
    """One line of a pass's report."""

    email: str
    step: int  # 1-based
    subject: str
    message_id: str
    at: datetime
    detail: str = ""

    @property
    def label(self) -> str:
        """How people read the step: "step 2", "rule reply" or "check-in 1"."""
        return step_label(self.step)


@dataclass
class DispatchReport:
    """What one pass did (or, with ``dry_run``, would do)."""

    sent: list[SendLine] = field(default_factory=list)
    retrying: list[SendLine] = field(default_factory=list)
    failed: list[SendLine] = field(default_factory=list)
    unknown: list[SendLine] = field(default_factory=list)
    reconciled: list[SendLine] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    paused: str | None = None
    # Steps due to a recipient domain whose sending is paused (it refused us for policy):
    # domain -> how many; they stay due. Told by `status`, not each pass.
    held: dict[str, int] = field(default_factory=dict)
    # Contacts newly found to lack a field their templates use: email -> the field. They
    # wait (``needs_data``); everyone else is sent. Ones already marked wait silently.
    lacking: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False
    busy: bool = False  # another pass held the ledger: this one did nothing
    # Due steps still wait for a slot that can't have opened, and nothing changed: the pass
    # didn't read them again (nor would a forecast find anything new).
    quiet: bool = False

    def sentences(self, *, subjects: bool) -> list[tuple[int, str]]:
        """What the pass did, one (logging level, sentence) per send or finished sequence;
        ``subjects`` adds each sent message's subject. Problems and the pause are not in it:
        the CLI and the daemon each tell those their own way."""
        verb = "would send" if self.dry_run else "sent"
        said = []
        for line in self.sent:
            text = f"{verb} {line.label} to {line.email}"
            if not subjects:
                text += f": {line.message_id}"
            elif line.subject:
                text += f": {line.subject} {line.message_id}"
            said.append((INFO, text))
        said += [
            (INFO, f"found in Sent after an interruption: {line.label} to {line.email}")
            for line in self.reconciled
        ]
        said += [
            (WARNING, f"will retry {line.label} to {line.email}: {line.detail}")
            for line in self.retrying
        ]
        said += [
            (WARNING, f"failed {line.label} to {line.email}: {line.detail}") for line in self.failed
        ]
        said += [
            (
                ERROR,
                f"UNKNOWN whether {line.label} reached {line.email} ({line.message_id}); "
                "check, then `outreach outbox resolve`",
            )
            for line in self.unknown
        ]
        said += [
            (INFO, f"{email}: sequence finished without a reply -> no_response")
            for email in self.finished
        ]
        said += [
            (
                WARNING,
                f"{email}: not sent, needs data: its templates use {name}, which it lacks "
                f"(outreach contacts edit {email} --set {name}=...); the others are sent",
            )
            for email, name in self.lacking.items()
        ]
        return said


class Dispatcher:
    """Pacing, claiming and delivery of the due steps for one practice's configuration."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        templates: TemplateSet,
        *,
        smtp: OpenSmtp,
        sent_folder: SentFolder | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.templates = templates
        self.due = DueSteps(store, settings)
        self.smtp = smtp
        self.sent_folder = sent_folder
        self.lock = DispatchLock(settings.database_url)
        self._quiet: Quiet | None = None

    # --- one pass ---------------------------------------------------------------------------

    async def run_pass(
        self,
        now: datetime,
        *,
        dry_run: bool = False,
        stopping: Callable[[], bool] = lambda: False,
        wait_for_other: float = 0.0,
        on_wait: Callable[[], None] = lambda: None,
    ) -> DispatchReport:
        """Reconcile interrupted sends, then send every step that is due and allowed now.

        One pass at a time per database: a row another live pass is sending must not look
        interrupted. If another pass holds the ledger, wait up to ``wait_for_other`` seconds
        (calling ``on_wait`` once as the wait starts), then give up with ``busy`` set.
        ``stopping`` is asked before each message: once it is true, the message in flight is
        finished and recorded, and the rest stay queued for the next pass."""
        report = DispatchReport(dry_run=dry_run)
        report.paused = self.paused_reason(now)
        if report.paused:
            return report
        if not dry_run:
            with self.store.session() as session:
                lift_ended_pause(session, now)
        if dry_run:  # reads only: no lock needed
            await self._pass(now, report, stopping)
            return report
        try:
            taken = await self._take_lock(wait_for_other, on_wait)
        except OSError as exc:  # e.g. a lock file another user left behind
            report.problems.append(f"can't take the dispatch lock {self.lock.path}: {exc}")
            return report
        if not taken:
            report.busy = True
            return report
        try:
            await self._reconcile(now, report)
            await self._pass(now, report, stopping)
        except OperationalError as exc:
            # A full disk, a lost database: stop here. What was handed to SMTP before the
            # failed write is still `sending`, and the next pass reconciles it; nothing else
            # was sent.
            cause = getattr(exc, "orig", None) or exc
            report.problems.append(f"the database failed ({cause}); the pass stopped")
        finally:
            await asyncio.to_thread(self.lock.release)
        return report

    async def _take_lock(self, wait: float, on_wait: Callable[[], None]) -> bool:
        deadline = asyncio.get_running_loop().time() + wait
        waiting = False
        while not await asyncio.to_thread(self.lock.try_acquire):
            if asyncio.get_running_loop().time() >= deadline:
                return False
            if not waiting and wait > 0:
                on_wait()
                waiting = True
            await asyncio.sleep(LOCK_RETRY_SECONDS)
        return True

    async def _pass(
        self, now: datetime, report: DispatchReport, stopping: Callable[[], bool]
    ) -> None:
        dry_run = report.dry_run
        with self.store.session() as session:
            # Read before the scan: a change committed while this pass runs makes the next
            # pass's mark differ, so it looks again.
            mark = None if dry_run else self.due.backlog_mark(session, now)
            if mark is not None and self._still_quiet(mark, now):
                report.quiet = True
                return
            found = self.due.scan(session, now)
            if not dry_run:
                report.finished = self.due.settle(session, found, now)
            found.candidates = self._not_held(session, found.candidates, report)
            found.candidates = self._not_lacking(session, found.candidates, now, dry_run)
            by_key = {c.key: c for c in found.candidates}
            dues, sends = self.due.due_sends(found.candidates), self.due.send_log(session, now)
            plan = schedule(dues, self.due.policy, sends, start=now, until=now)
            if not plan and dues and mark is not None:  # nothing placed: ``sends`` unchanged
                self._quiet = self._wait_for_slot(dues, sends, now, mark)
        ready = [by_key[due.key] for due, _at in plan]  # type: ignore[index]
        if not ready:
            return
        if dry_run:
            for c in ready:
                report.sent.append(SendLine(c.email, c.step_index + 1, "", "", now, "dry run"))
            return
        wanted = min(self.settings.smtp.connections, len(ready))
        async with contextlib.AsyncExitStack() as stack:
            sessions = [await stack.enter_async_context(self.smtp()) for _ in range(wanted)]
            transports = await self._connect(sessions, report)
            if not transports:
                return
            claims: asyncio.Queue[Claim | None] = asyncio.Queue()
            stop = asyncio.Event()  # a policy refusal: every connection stops
            # Each ends on its own (the claiming hands every sender its None even when it
            # fails), so the sessions close after all of them; then the first failure is told.
            ended = await asyncio.gather(
                self._claim_ahead(ready, now, report, claims, len(transports), stop, stopping),
                *(self._send_all(t, claims, now, report, stopping, stop) for t in transports),
                return_exceptions=True,
            )
            for failure in ended:
                if isinstance(failure, BaseException):
                    raise failure

    @staticmethod
    async def _connect(
        sessions: Sequence[SmtpTransport], report: DispatchReport
    ) -> list[SmtpTransport]:
        """The sessions that connected, side by side. One refused while another connected
        (a provider allowing fewer parallel sessions than ``[smtp] connections``) is logged and
        the pass goes on with the rest; none connected is the pass's problem."""
        results = await asyncio.gather(
            *(session.connect() for session in sessions), return_exceptions=True
        )
        opened = [s for s, result in zip(sessions, results, strict=True) if result is None]
        refused = [r for r in results if isinstance(r, BaseException)]
        for result in refused:
            if not isinstance(result, MailServerUnusable):
                raise result
        if refused and not opened:
            report.problems.append(str(refused[0]))
        elif refused:
            log.warning(
                "%d of %d SMTP connections refused (%s); sending on %d",
                len(refused),
                len(sessions),
                refused[0],
                len(opened),
            )
        return opened

    def _still_quiet(self, mark: tuple[object, ...], now: datetime) -> bool:
        """True while the due steps of an earlier pass wait for a slot that can't have opened
        and nothing in the store changed (``mark``): this pass need not read them again."""
        quiet = self._quiet
        if quiet is None:
            return False
        waiting = quiet.since <= now < quiet.until and now - quiet.since < QUIET_RECHECK
        if waiting and mark == quiet.mark:
            return True
        self._quiet = None
        return False

    def _wait_for_slot(
        self, dues: Sequence[DueSend], sends: SendLog, now: datetime, mark: tuple[object, ...]
    ) -> Quiet | None:
        """When no due step fits now: the earliest slot any can take (jitter left out, so
        never later than the schedule's), with the store's mark from before the scan."""
        until = next_slot(
            dues,
            replace(self.due.policy, jitter=timedelta(0)),
            sends,
            start=now,
            until=now + QUIET_RECHECK,
        )
        if until is not None and until <= now:
            return None
        return Quiet(until or now + QUIET_RECHECK, mark, now)

    @staticmethod
    def _not_held(
        session: Session, candidates: list[Candidate], report: DispatchReport
    ) -> list[Candidate]:
        """The candidates whose recipient domain is not paused; the others are counted."""
        paused = paused_domains(session)
        if not paused:
            return candidates
        kept = []
        for candidate in candidates:
            domain = candidate.email.rpartition("@")[2].lower()
            if domain in paused:
                report.held[domain] = report.held.get(domain, 0) + 1
            else:
                kept.append(candidate)
        return kept

    def _not_lacking(
        self, session: Session, candidates: list[Candidate], now: datetime, dry_run: bool
    ) -> list[Candidate]:
        """The candidates without a ``needs_data`` mark, and the marked ones whose message now
        renders (their mark cleared, unless ``dry_run``): a contact waiting for data must not
        take the pass's places from the others."""
        ids = [c.contact_id for c in candidates]
        marked: dict[int, ContactRow] = {}
        for chunk in in_chunks(ids):
            query = select(ContactRow).where(
                ContactRow.id.in_(chunk), ContactRow.needs_data.is_not(None)
            )
            marked.update((row.id, row) for row in session.scalars(query))
        if not marked:
            return candidates
        kept = []
        for candidate in candidates:
            contact = marked.get(candidate.contact_id)
            if contact is None:
                kept.append(candidate)
                continue
            try:
                self._message_for(session, contact, candidate, "<check@localhost>", now)
            except MissingContactField as exc:
                if not dry_run:
                    contact.needs_data = exc.field
                continue
            except TemplateProblem:
                pass  # the claim reports it
            if not dry_run:
                contact.needs_data = None
            kept.append(candidate)
        return kept

    async def _send_all(
        self,
        transport: SmtpTransport,
        claims: asyncio.Queue[Claim | None],
        now: datetime,
        report: DispatchReport,
        stopping: Callable[[], bool],
        stop: asyncio.Event,
    ) -> None:
        """One connection's share of the pass: it takes the next claim from ``claims`` (shared
        by every connection) until a None, ``stopping`` says so, or ``stop`` is set."""
        unrecorded: Claim | None = None  # sent, recorded with the next start
        with self.store.engine.connect() as connection:  # held: no pool checkout per message
            try:
                while True:
                    if unrecorded is not None and claims.empty():
                        # Nothing to start yet: record the sent one now rather than leave it
                        # `sending` while the next claims are built.
                        self._advance(connection, unrecorded, None, now)
                        unrecorded = None
                    claim = await claims.get()
                    if claim is None:
                        break
                    if stopping() or stop.is_set():
                        stop.set()  # the claiming stops too
                        break
                    started = self._advance(connection, unrecorded, claim, now)
                    unrecorded = None
                    if not started:
                        continue  # replied, opted out or paused since the claim: not sent
                    delivery = await transport.send(claim.message)
                    if delivery.outcome is Outcome.SENT:
                        unrecorded = claim
                    if not await self._after_send(claim, delivery, now, report):
                        stop.set()
                        break
                    if delivery.outcome is Outcome.RETRY and not transport.connected:
                        break  # the server is gone: what is left waits for the next pass
            finally:
                self._advance(connection, unrecorded, None, now)

    async def _after_send(
        self, claim: Claim, delivery: Delivery, now: datetime, report: DispatchReport
    ) -> bool:
        """Report one send (a failure is recorded here; a success with the next start);
        False when the pass must stop (sending paused)."""
        candidate, message = claim.candidate, claim.message
        line = SendLine(
            candidate.email,
            candidate.step_index + 1,
            message.subject,
            message.message_id,
            now,
            delivery.detail,
        )
        if delivery.outcome is not Outcome.SENT:
            self._record(claim.outbox_id, delivery, now, report, line)
            return delivery.outcome is not Outcome.POLICY
        report.sent.append(line)
        if self.sent_folder is not None:
            try:
                await asyncio.to_thread(self.sent_folder.append, message.data, now)
            except Exception as exc:
                report.problems.append(f"{candidate.email}: sent, but not filed in Sent ({exc})")
        return True

    async def _claim_ahead(
        self,
        ready: Sequence[Candidate],
        now: datetime,
        report: DispatchReport,
        claims: asyncio.Queue[Claim | None],
        senders: int,
        stop: asyncio.Event,
        stopping: Callable[[], bool],
    ) -> None:
        """Claim ``ready`` a chunk at a time into ``claims`` for the senders, then one None
        each: the next messages are built while the server takes the previous ones."""
        try:
            for first in range(0, len(ready), CLAIM_CHUNK):
                if stop.is_set() or stopping():
                    break
                for claim in await self._claim(ready[first : first + CLAIM_CHUNK], now, report):
                    claims.put_nowait(claim)
        finally:
            for _ in range(senders):
                claims.put_nowait(None)

    async def _claim(
        self, chunk: Sequence[Candidate], now: datetime, report: DispatchReport
    ) -> list[Claim]:
        """Ledger rows for some of this pass's sends, each with its Message-ID and message.

        Read in one transaction, rendered outside any (the senders run between two
        messages), written in one. New rows are ``queued``: nothing has been handed to SMTP
        yet, so a crash before ``_advance`` starts one leaves it for the next pass, with the
        same Message-ID.
        """
        drafts = []
        with self.store.session() as session:
            contacts = self._contacts(session, [c.contact_id for c in chunk])
            suppressed = suppressed_keys(session, [c.email_key for c in contacts.values()])
            for candidate in chunk:
                contact = contacts.get(candidate.contact_id)
                rule_reply = candidate.step_index >= REPLY_STEP_BASE
                if contact is None or not _may_send(contact, suppressed, now, rule_reply):
                    continue
                if candidate.outbox_id is None:
                    message_id = new_message_id(self.settings.sender.message_id_domain)
                else:
                    row = session.get(OutboxRow, candidate.outbox_id)
                    if row is None or row.state not in WAITING:
                        continue
                    message_id = row.message_id
                earlier = self._earlier(session, contact, candidate)
                drafts.append((candidate, contact, message_id, earlier))
        built: list[tuple[Candidate, ContactRow, OutboundMessage | MissingContactField]] = []
        for candidate, contact, message_id, earlier in drafts:
            template = candidate.template if candidate.outbox_id is not None else None
            try:
                message: OutboundMessage | MissingContactField = self.compose(
                    contact, candidate.step_index, earlier, message_id, now, template=template
                )
            except MissingContactField as exc:
                message = exc
            except (TemplateProblem, ValueError) as exc:  # a header that can't be written
                report.problems.append(f"{candidate.email}: not sent: {exc}")
                continue
            built.append((candidate, contact, message))
            await asyncio.sleep(0)  # a sender whose reply came goes on
        try:
            with self.store.session() as session:
                return self._record_claims(session, built, now, report)
        except IntegrityError:
            report.problems.append("another dispatch pass claimed these steps first")
            return []

    def _record_claims(
        self,
        session: Session,
        built: Sequence[tuple[Candidate, ContactRow, OutboundMessage | MissingContactField]],
        now: datetime,
        report: DispatchReport,
    ) -> list[Claim]:
        """The rows of the messages built (``queued``), and the contacts that need data."""
        data = ContactData(session)
        claimed: list[tuple[Candidate, OutboundMessage, bool]] = []
        new_rows: list[dict[str, object]] = []
        for candidate, contact, message in built:
            lacks: str | None = None
            if isinstance(message, MissingContactField):
                if not data.is_known(contact.segment, message.field):
                    # A field no contact of the segment has: the template's error.
                    report.problems.append(f"{candidate.email}: not sent: {message}")
                    continue
                lacks = message.field
                if contact.needs_data != lacks:
                    report.lacking[candidate.email] = lacks
            if contact.needs_data != lacks:
                session.execute(
                    update(ContactRow).where(ContactRow.id == contact.id).values(needs_data=lacks)
                )
            if isinstance(message, MissingContactField):
                continue
            if candidate.outbox_id is None:
                template = self.due.template_of(candidate)
                new_rows.append(
                    queued_row(
                        contact.id,
                        candidate.step_index,
                        template,
                        message.message_id,
                        now,
                        message.subject,
                    )
                )
            claimed.append((candidate, message, contact.stage == NEW))
        ids = iter(add_queued(session, new_rows))
        return [
            Claim(
                next(ids) if candidate.outbox_id is None else candidate.outbox_id,
                candidate,
                message,
                new,
            )
            for candidate, message, new in claimed
        ]

    def _earlier(
        self, session: Session, contact: ContactRow, candidate: Candidate
    ) -> list[tuple[str, str]]:
        """The (Message-ID, subject) of the steps a candidate's message follows up on."""
        nurture = candidate.step_index >= NURTURE_STEP_BASE
        if not candidate.step_index or nurture:
            return []
        return thread_rows(session, contact.id, candidate.step_index)

    def _message_for(
        self,
        session: Session,
        contact: ContactRow,
        candidate: Candidate,
        message_id: str,
        now: datetime,
    ) -> OutboundMessage:
        """The message a candidate step sends, in the thread of the steps sent before it."""
        earlier = self._earlier(session, contact, candidate)
        template = candidate.template if candidate.outbox_id is not None else None
        return self.compose(
            contact, candidate.step_index, earlier, message_id, now, template=template
        )

    @staticmethod
    def _advance(
        connection: Connection, sent: Claim | None, start: Claim | None, now: datetime
    ) -> bool:
        """One transaction per message: record the previous message as sent, and mark the next
        ``sending`` right before its SMTP transaction if its contact may still be written to
        (stage, pause and suppression checked in the same statement). True if it may go."""
        with connection.begin():
            if sent is not None:
                candidate = sent.candidate
                mark_sent(
                    connection,
                    sent.outbox_id,
                    candidate.contact_id,
                    candidate.step_index,
                    sent.message.message_id,
                    now,
                    maybe_new=sent.maybe_new,
                )
            if start is None:
                return False
            result = connection.execute(START, {"oid": start.outbox_id, "now": now})
            return result.rowcount == 1

    @staticmethod
    def _contacts(session: Session, ids: Sequence[int]) -> dict[int, ContactRow]:
        found: dict[int, ContactRow] = {}
        for chunk in in_chunks(ids):
            found.update(
                (row.id, row)
                for row in session.scalars(select(ContactRow).where(ContactRow.id.in_(chunk)))
            )
        return found

    def compose(
        self,
        contact: ContactRow,
        step_index: int,
        earlier: Sequence[tuple[str, str]],
        message_id: str,
        now: datetime,
        *,
        template: str | None = None,
    ) -> OutboundMessage:
        """The exact message a step (or a rule's reply) sends this contact (and ``preview``)."""
        if step_index >= NURTURE_STEP_BASE:
            # A check-in months later starts a conversation of its own.
            name = template or self.settings.segments[contact.segment].nurture_template
            thread_it, number = False, 0
        elif step_index >= REPLY_STEP_BASE:
            # A rule's reply threads under our conversation when there is one.
            assert template is not None
            name, thread_it, number = template, True, 0
        else:
            step = self.settings.segments[contact.segment].sequence[step_index]
            name, thread_it, number = step.template, step.thread, step_index + 1
        context = template_context(
            self.settings,
            contact.segment,
            template_fields(contact),
            step_number=number,
            template=name,
        )
        threaded = thread_it and bool(earlier)
        rendered = self.templates.render(contact.segment, name, context, needs_subject=not threaded)
        thread = thread_for(rendered.subject, thread_it, earlier)
        return build_message(
            self.settings,
            rendered,
            to_name=full_name(contact.first_name, contact.last_name),
            to_address=contact.email,
            message_id=message_id,
            thread=thread,
            date=now,
        )

    def _record(  # a failed or uncertain send
        self,
        outbox_id: int,
        delivery: Delivery,
        now: datetime,
        report: DispatchReport,
        line: SendLine,
    ) -> None:
        sending = self.settings.sending
        with self.store.session() as session:
            row = session.get(OutboxRow, outbox_id)
            assert row is not None
            contact = row.contact
            row.updated_at = now
            row.last_error = delivery.detail
            outcome = delivery.outcome  # never SENT here: a success is recorded by _advance
            if outcome is Outcome.RETRY and row.attempts < sending.retry_max_attempts:
                minutes = min(
                    sending.retry_first_minutes * 2 ** (row.attempts - 1), sending.retry_max_minutes
                )
                row.state = OutboxState.RETRY
                row.next_attempt_at = now + timedelta(minutes=minutes)
                report.retrying.append(line)
            elif outcome is Outcome.POLICY:
                row.state = OutboxState.RETRY
                row.attempts -= 1  # not this message's fault
                row.next_attempt_at = None
                reason = (
                    f"{now:%Y-%m-%d %H:%M} UTC: the server refused on policy grounds "
                    f"({delivery.detail}); check the practice's SMTP login, SPF/DKIM and "
                    "reputation, then run `outreach sending resume`"
                )
                pause_sending(session, reason, now, keep_first=False)
                report.paused = reason
                log.critical("sending paused: %s", reason)
            elif outcome is Outcome.UNKNOWN:
                row.state = OutboxState.UNKNOWN
                report.unknown.append(line)
            else:  # permanent failure, or retries used up
                row.state = OutboxState.FAILED
                report.failed.append(line)
                if outcome is Outcome.FAILED:
                    self._bounce(session, contact, now, f"hard bounce at send: {delivery.detail}")

    def _bounce(self, session: Session, contact: ContactRow, now: datetime, reason: str) -> None:
        move_contact(contact, self.due.pipeline, BOUNCED, now, reason)
        suppress(session, contact.email_key, reason, now)

    # --- interrupted sends, pause -----------------------------------------------------------

    async def _reconcile(self, now: datetime, report: DispatchReport) -> None:
        with self.store.session() as session:
            orphans = session.execute(
                select(OutboxRow.id, OutboxRow.message_id).where(
                    OutboxRow.state == OutboxState.SENDING
                )
            ).all()
        for outbox_id, message_id in orphans:
            found: bool | None = None
            if self.sent_folder is not None:
                try:
                    found = await asyncio.to_thread(self.sent_folder.contains, message_id)
                except Exception as exc:
                    report.problems.append(f"can't search Sent for {message_id}: {exc}")
                    continue
            with self.store.session() as session:
                row = session.get(OutboxRow, outbox_id)
                if row is None or row.state != OutboxState.SENDING:
                    continue
                contact = row.contact
                line = SendLine(contact.email, row.step_index + 1, row.subject, message_id, now)
                if found:
                    sent_at = row.updated_at
                    mark_sent(
                        session.connection(),
                        row.id,
                        contact.id,
                        row.step_index,
                        message_id,
                        sent_at,
                    )
                    row.last_error = "interrupted; found in the Sent folder"
                    report.reconciled.append(line)
                else:
                    row.state = OutboxState.UNKNOWN
                    row.last_error = (
                        "interrupted during sending; not found in Sent"
                        if found is False
                        else "interrupted during sending; no Sent copies to check"
                    )
                    report.unknown.append(line)

    def paused_reason(self, now: datetime | None = None) -> str | None:
        """Why all sending is paused at ``now`` (default: the system clock), or None."""
        with self.store.session() as session:
            return sending_paused(session, now)


async def send_due(
    dispatcher: Dispatcher,
    *,
    now: datetime | None,
    once: bool,
    dry_run: bool,
    on_pass: Callable[[DispatchReport], None],
    wait_for_other: float = SEND_DUE_WAIT_SECONDS,
    on_wait: Callable[[], None] = lambda: None,
) -> DispatchReport:
    """Passes as ``outreach send-due`` runs them: one at ``now`` (a fixed time gives exactly
    one); else, unless ``once``, passes again while the last one sent something and nothing
    stopped it. Each waits up to ``wait_for_other`` for a pass already running (the
    daemon's). Each pass's report goes to ``on_pass``; the last one is returned."""
    when = now or datetime.now(UTC)
    while True:
        report = await dispatcher.run_pass(
            when, dry_run=dry_run, wait_for_other=wait_for_other, on_wait=on_wait
        )
        on_pass(report)
        stopped = bool(report.paused or report.problems or report.busy)
        stop = once or dry_run or now is not None or stopped
        if stop or not report.sent:
            return report
        when = datetime.now(UTC)


def _may_send(
    contact: ContactRow, suppressed: set[str], now: datetime, rule_reply: bool = False
) -> bool:
    """Whether a message may go to a contact now (checked again in the statement that
    starts each send, since a reply or opt-out may arrive in between)."""
    if contact.email_key in suppressed:
        return False
    allowed = contact.stage not in EXIT_STAGES if rule_reply else contact.stage in ACTIVE_STAGES
    if not allowed:
        return False
    return contact.paused_until is None or contact.paused_until <= now


__all__ = ["Candidate", "Claim", "DispatchReport", "Dispatcher", "SendLine", "suppress"]
