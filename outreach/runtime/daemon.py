"""``outreach run``: the long-running service.

One asyncio loop with APScheduler 3.x jobs: ``dispatch`` (every minute: send what is due),
``inbox`` (the IDLE watcher, in a thread of its own) and ``digest`` (a daily email to the
therapist). Due times live in the database, not in a job store, so downtime loses nothing and
an overdue step is sent once. A tick task on the loop's own (monotonic) timer pings systemd's
watchdog while the loop and the watcher are healthy, and notices wall-clock jumps.

Start-up order: config, templates, database migration, the instance lock, then the SMTP and
IMAP logins (waiting for servers that are not up yet); only then ``READY=1``. SIGTERM/SIGINT
finish the message in flight and exit 0; SIGHUP reloads config and templates, or keeps the
running ones when the new ones are broken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time as monotonic_time
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.date import DateTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]
from sqlalchemy.exc import DBAPIError

from outreach.config import Settings, load_checked
from outreach.errors import (
    ConfigError,
    MailServerUnusable,
    OutreachError,
    SignInNeeded,
    StoreError,
)
from outreach.mail.abc import Outcome, SyncReport
from outreach.mail.check import check_imap, check_smtp_async
from outreach.runtime.clock import Clock
from outreach.runtime.parts import Parts, build_checked_parts
from outreach.runtime.systemd import Notifier, watchdog_interval
from outreach.runtime.threads import in_daemon_thread
from outreach.services.digest import digest_message
from outreach.services.dispatch import DispatchReport
from outreach.services.status import (
    DAEMON_PID,
    DAEMON_STARTED,
    DIGEST_SENT_ON,
    LAST_DISPATCH,
    LAST_SYNC,
    due_today,
    last_reply,
    read_fact,
    record_facts,
)
from outreach.store.database import (
    Store,
    database_problem,
    database_unreachable,
    open_store,
)
from outreach.store.instance import InstanceLock
from outreach.store.ledger import sending_paused

log = logging.getLogger("outreach.daemon")  # pinned: journal lines show it

STOP_GRACE_SECONDS = 7.0  # SIGTERM -> exit within 10 s: the message in flight, then go
WATCHER_STOP_SECONDS = 2.0
TICK_SECONDS = 5.0  # without a systemd watchdog: how often to look for clock jumps
CLOCK_JUMP_SECONDS = 60.0
MAX_STARTUP_RETRY_SECONDS = 30.0
LOCK_CHECK_SECONDS = 5.0  # how soon a lost PostgreSQL lock is taken back


class Daemon:
    """The service: start, run the jobs, reload, stop."""

    def __init__(
        self,
        config_path: Path | None,
        *,
        notifier: Notifier | None = None,
        clock: Clock | None = None,
        stall_seconds: float | None = None,
    ) -> None:
        self.config_path = config_path
        self.notifier = notifier or Notifier()
        self._clock = clock
        self._stall_seconds = stall_seconds
        self.store: Store | None = None
        self.lock: InstanceLock | None = None
        self.parts: Parts | None = None
        self.scheduler: AsyncIOScheduler | None = None
        self.exit_code = 0
        self._stop = asyncio.Event()
        self._stopping = False
        self._ready = False
        self._paused: str | None = None
        self._problems: tuple[str, ...] = ()
        self._watch_flag = _Flag()
        self._watcher_beat = monotonic_time.monotonic()
        self._passing: asyncio.Task[object] | None = None
        self._inbox: asyncio.Task[object] | None = None
        self._reloading = False
        self._due_today: tuple[date, int] | None = None  # the status line's count, and its day

    # --- the whole life ---------------------------------------------------------------------

    async def run(self) -> int:
        """Start, serve until a stop signal, stop. Returns the exit code.

        Raises OutreachError when the configuration, templates, database or a mail login is
        unusable (a person must act); returns 1 when the servers stayed unreachable."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop, signal.Signals(signum).name)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        try:
            settings = load_checked(self.config_path)
            self.lock = InstanceLock(settings.database_url)
            if not await self._wait_until("the database", self._open_database, settings):
                return self.exit_code
            assert self.store is not None
            self.parts = parts = self._build(settings, self.store)
            if self._clock is None:
                self._clock = Clock.from_environment(ZoneInfo(parts.settings.practice.timezone))
            if not await self._wait_until("mail servers", self._log_in, parts.settings):
                return self.exit_code
            record_facts(
                self.store,
                self.now(),
                {DAEMON_PID: str(os.getpid()), DAEMON_STARTED: self.now().isoformat()},
            )
            self._start_jobs(parts.settings)
            self._ready = True
            self.notifier.ready(self.status_line())
            log.info("ready: %s", self.status_line())
            tasks = [asyncio.create_task(self._tick()), asyncio.create_task(self._keep_lock())]
            await self._stop.wait()
            await self._shutdown()
            for task in tasks:
                task.cancel()
            return self.exit_code
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
            if self.lock is not None:
                self.lock.release()
            if self.store is not None:
                self.store.close()
            self.notifier.close()

    def now(self) -> datetime:
        assert self._clock is not None
        return self._clock.now()

    def request_stop(self, why: str = "stop requested") -> None:
        if self._stopping:
            return
        self._stopping = True
        log.info("%s: stopping", why)
        self.notifier.stopping()
        self._stop.set()

    def request_reload(self) -> None:
        if not self._ready or self._stopping or self._reloading:
            log.warning("SIGHUP ignored: the daemon is %s", "busy" if self._ready else "starting")
            return
        self._reloading = True
        asyncio.get_running_loop().create_task(self.reload())

    # --- start-up ---------------------------------------------------------------------------

    @staticmethod
    def _build(settings: Settings, store: Store) -> Parts:
        """Check the templates and build the jobs' parts; raises ConfigError if unusable."""
        return build_checked_parts(
            settings, store, consequence="templates check failed: fix the templates, then start"
        )

    async def _wait_until(
        self,
        what: str,
        attempt: Callable[[Settings], Awaitable[list[str]]],
        settings: Settings,
    ) -> bool:
        """Run ``attempt`` until it reports no problem, waiting for servers that are not
        reachable yet (the machine just booted).

        ``attempt`` raises what waiting won't fix (a refused login, an untrusted certificate);
        it returns what may (a server that does not answer), retried with backoff for
        ``daemon.startup_timeout_seconds``; then the daemon exits 1 and systemd restarts it.
        """
        deadline = monotonic_time.monotonic() + settings.daemon.startup_timeout_seconds
        delay = 1.0
        while not self._stopping:
            problems = await attempt(settings)
            if not problems:
                return True
            if monotonic_time.monotonic() + delay > deadline:
                log.error(
                    "%s still unreachable after %.0f s: %s",
                    what,
                    settings.daemon.startup_timeout_seconds,
                    "; ".join(problems),
                )
                self.exit_code = 1
                return False
            self.notifier.status(f"waiting for {what}: {'; '.join(problems)}")
            log.warning("waiting %.0f s for %s: %s", delay, what, "; ".join(problems))
            await _wait(self._stop, delay)
            delay = min(delay * 2, MAX_STARTUP_RETRY_SECONDS)
        return False

    async def _open_database(self, settings: Settings) -> list[str]:
        """Take the instance lock, then open (and migrate) the store; a database that does
        not answer yet is a problem to wait out, anything else is raised."""
        assert self.lock is not None
        lock = self.lock
        try:
            # The lock before the store: a second daemon must not even migrate.
            await asyncio.to_thread(lock.acquire)
            self.store = await asyncio.to_thread(open_store, settings.database_url)
        except (StoreError, DBAPIError) as exc:
            if not database_unreachable(exc):
                if isinstance(exc, StoreError):
                    raise
                raise StoreError(f"can't open the database: {exc.orig}") from exc
            await asyncio.to_thread(lock.release)
            return [f"{settings.database_label}: {database_problem(exc)}"]
        return []

    async def _log_in(self, settings: Settings) -> list[str]:
        """Log in to SMTP and IMAP; servers that don't answer are problems to wait out."""
        problems = []
        tokens = self.parts.tokens if self.parts is not None else None
        checks: list[Callable[[], Awaitable[str]]] = [
            lambda: check_smtp_async(settings.smtp, tokens)
        ]
        if settings.inbound.maildir is None:
            checks.append(lambda: asyncio.to_thread(check_imap, settings.imap, tokens))
        for check in checks:
            try:
                log.info("%s", await check())
            except SignInNeeded as exc:
                # Start anyway: sending and watching wait, and resume by themselves within a
                # minute of `outreach auth login`.
                log.error("%s; sending and watching wait until then", exc)
                return []
            except MailServerUnusable as exc:
                if not exc.transient:
                    raise
                problems.append(str(exc))
        return problems

    def _start_jobs(self, settings: Settings) -> None:
        zone = ZoneInfo(settings.practice.timezone)
        self.scheduler = AsyncIOScheduler(
            timezone=zone,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        )
        self.scheduler.add_job(self._watch_inbox, DateTrigger(), id="inbox")
        self._schedule(settings)
        self.scheduler.start()

    def _schedule(self, settings: Settings) -> None:
        """(Re)schedule the dispatch and digest jobs for these settings."""
        assert self.scheduler is not None
        zone = ZoneInfo(settings.practice.timezone)
        self.scheduler.add_job(
            self._dispatch,
            IntervalTrigger(seconds=settings.daemon.dispatch_every_seconds, timezone=zone),
            id="dispatch",
            next_run_time=datetime.now(zone),
            replace_existing=True,
        )
        if self.scheduler.get_job("digest") is not None:
            self.scheduler.remove_job("digest")
        if settings.daemon.digest:
            at = settings.daemon.digest_time
            self.scheduler.add_job(
                self._digest,
                CronTrigger(hour=at.hour, minute=at.minute, second=at.second, timezone=zone),
                id="digest",
            )
            local = self.now().astimezone(zone)
            if local.time() >= at and not self._digest_sent(local.date()):
                self.scheduler.add_job(
                    self._digest, DateTrigger(), id="digest-catch-up", replace_existing=True
                )

    # --- jobs -------------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        if self._stopping or self.parts is None:
            return
        self._passing = asyncio.current_task()
        try:
            report = await self.parts.dispatcher.run_pass(
                self.now(), stopping=lambda: self._stopping
            )
        except Exception:
            log.exception("dispatch pass failed; the next pass retries")
            return
        finally:
            self._passing = None
        if report.busy:
            log.info("dispatch: another pass (a send-due by hand?) is running; this one waits")
            return
        _log_report(report)
        problems = tuple(report.problems)
        if problems != self._problems:
            for problem in problems:
                log.error("dispatch: %s (logged again only if it changes)", problem)
            if self._problems and not problems:
                log.info("dispatch: the earlier problem has cleared")
            self._problems = problems
        if report.paused != self._paused:
            self._paused = report.paused
            if report.paused:
                log.critical("sending is paused: %s (outreach sending resume)", report.paused)
            else:
                log.info("sending is no longer paused")
        assert self.store is not None
        summary = f"{len(report.sent)} sent" + (
            f", {len(report.retrying)} to retry, {len(report.failed)} failed, "
            f"{len(report.unknown)} unknown"
            if report.retrying or report.failed or report.unknown
            else ""
        )
        record_facts(self.store, self.now(), {LAST_DISPATCH: summary})
        self.notifier.status(self.status_line(quiet=report.quiet))

    async def _watch_inbox(self) -> None:
        """The inbox watcher for the daemon's whole life (restarted on reload)."""
        self._inbox = asyncio.current_task()
        loop = asyncio.get_running_loop()
        while not self._stopping:
            parts = self.parts
            assert parts is not None
            flag = self._watch_flag = _Flag()
            try:
                await self._run_watcher(parts, flag, loop)
            except Exception:
                log.critical(
                    "the inbox watcher failed; stopping so systemd restarts us", exc_info=True
                )
                self.exit_code = 1
                self.request_stop("inbox watcher failed")
                return
            if not flag.restart:
                return

    async def _run_watcher(
        self, parts: Parts, flag: _Flag, loop: asyncio.AbstractEventLoop
    ) -> None:
        """One run of the configured inbox source: IMAP IDLE, or a local Maildir."""

        def on_pass(report: SyncReport) -> None:
            loop.call_soon_threadsafe(self._after_sync, report)

        await in_daemon_thread(
            lambda: parts.inbox.watch(
                parts.processor,
                stop=flag.event,
                poll_seconds=parts.settings.inbound.poll_seconds,
                on_pass=on_pass,
                heartbeat=self._beat,
                now=self.now,
            ),
            flag.event,
        )

    def _beat(self) -> None:
        self._watcher_beat = monotonic_time.monotonic()

    def _after_sync(self, report: SyncReport) -> None:
        for result in report.results:
            log.info(
                "inbox: %s from %s: %s",
                result.kind,
                result.contact or "an unknown sender",
                result.effect,
            )
        if self.store is not None and not self._stopping:
            record_facts(self.store, self.now(), {LAST_SYNC: ", ".join(report.folders)})
            if report.results:
                self.notifier.status(self.status_line())

    async def _digest(self) -> None:
        parts = self.parts
        if parts is None or self._stopping:
            return
        zone = ZoneInfo(parts.settings.practice.timezone)
        now = self.now()
        day = now.astimezone(zone).date()
        if self._digest_sent(day):
            return
        try:
            message = await asyncio.to_thread(digest_message, parts.dispatcher, now)
            async with parts.smtp() as transport:
                await transport.connect()
                delivery = await transport.send(message)
        except (MailServerUnusable, OSError) as exc:
            log.error("daily digest not sent: %s", exc)
            return
        if delivery.outcome is not Outcome.SENT:
            log.error("daily digest not sent: %s", delivery.detail)
            return
        assert self.store is not None
        record_facts(self.store, now, {DIGEST_SENT_ON: day.isoformat()})
        log.info("daily digest sent to %s: %s", message.recipient, message.subject)

    def _digest_sent(self, day: date) -> bool:
        assert self.store is not None
        fact = read_fact(self.store, DIGEST_SENT_ON)
        return fact is not None and fact[0] == day.isoformat()

    # --- health -----------------------------------------------------------------------------

    def status_line(self, *, quiet: bool = False) -> str:
        """``_status_line``, or a line saying the database can't be read right now: a status
        is never worth the daemon (PostgreSQL restarting as it becomes ready)."""
        try:
            return self._status_line(quiet=quiet)
        except DBAPIError:
            return "the database is unreachable; retrying"

    def _status_line(self, *, quiet: bool = False) -> str:
        """One line for systemd's STATUS=: what is watched, what is due, the last reply, and
        whether sending is paused ("watching INBOX; 3 due today; last reply 10:42").

        ``quiet``: the pass found the due steps still waiting for a slot and nothing changed,
        so the last count of what is due today stands (forecasting it reads every due
        contact: with a backlog of thousands, most of an idle daemon's CPU)."""
        parts, store = self.parts, self.store
        if parts is None or store is None:
            return "starting"
        if parts.tokens is not None:
            signed_in = parts.tokens.status()
            if signed_in.needed:
                return signed_in.summary  # "sign-in expired: run outreach auth login"
        zone = ZoneInfo(parts.settings.practice.timezone)
        now = self.now()
        today = now.astimezone(zone).date()
        if not quiet or self._due_today is None or self._due_today[0] != today:
            self._due_today = (today, due_today(parts.dispatcher.due, now))
        line = f"watching {parts.inbox.description}; {self._due_today[1]} due today"
        replied = last_reply(store)
        if replied is not None:
            local = replied.astimezone(zone)
            same_day = local.date() == now.astimezone(zone).date()
            line += f"; last reply {local:%H:%M}" if same_day else f"; last reply {local:%Y-%m-%d}"
        with store.session() as session:
            paused = sending_paused(session, now)
        if paused:
            line += "; SENDING PAUSED (outreach sending resume)"
        return line

    def healthy(self) -> bool:
        """The watcher made progress recently (the loop is alive if this runs at all)."""
        assert self.parts is not None
        limit = self._stall_seconds or max(120.0, 4 * self.parts.settings.imap.timeout)
        return monotonic_time.monotonic() - self._watcher_beat <= limit

    async def _tick(self) -> None:
        """Watchdog pings and clock-jump checks, on the loop's monotonic timer (APScheduler's
        wall-clock triggers would stall after a backwards jump)."""
        interval = watchdog_interval() or TICK_SECONDS
        wall, mono = time_pair()
        warned = False
        while True:
            await asyncio.sleep(interval)
            if self.healthy():
                self.notifier.watchdog()
                warned = False
            elif not warned:
                log.error("the inbox watcher is stuck; withholding the watchdog ping")
                warned = True
            now_wall, now_mono = time_pair()
            jump = (now_wall - wall) - (now_mono - mono)
            wall, mono = now_wall, now_mono
            if abs(jump) > CLOCK_JUMP_SECONDS and self.scheduler is not None:
                log.warning("the system clock jumped by %+.0f s; re-planning now", jump)
                zone = self.scheduler.timezone
                self.scheduler.modify_job("dispatch", next_run_time=datetime.now(zone))

    async def _keep_lock(self) -> None:
        """Check the instance lock is still ours: a PostgreSQL restart ends the session that
        held it, and a second daemon could then start. Take it back, or stop if another
        daemon took it meanwhile (exit 2: systemd must not start this one again)."""
        assert self.lock is not None
        lock, unreachable = self.lock, False
        while not self._stopping:
            await asyncio.sleep(LOCK_CHECK_SECONDS)
            try:
                held = await asyncio.to_thread(lock.still_held)
            except StoreError as exc:
                if not unreachable:
                    log.error("%s; retrying every %.0f s", exc, LOCK_CHECK_SECONDS)
                unreachable = True
                continue
            if unreachable and held:
                log.info("the database is back; the daemon lock is held again")
            unreachable = False
            if not held:
                log.critical(
                    "another outreach daemon took this database's lock while the connection "
                    "holding it was down; stopping this one"
                )
                self.exit_code = 2
                self.request_stop("lost the daemon lock")
                return

    # --- reload and stop --------------------------------------------------------------------

    async def reload(self) -> bool:
        """Load config and templates again; keep the running ones if the new ones fail."""
        self.notifier.reloading()
        log.info("SIGHUP: reloading the configuration and templates")
        try:
            assert self.parts is not None
            assert self.store is not None
            try:
                settings = await asyncio.to_thread(load_checked, self.config_path)
                parts = await asyncio.to_thread(self._build, settings, self.store)
            except OutreachError as exc:
                lines = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
                for line in lines:
                    log.error("reload refused: %s", line)
                log.error("reload refused: still running with the previous configuration")
                return False
            if parts.settings.database_url != self.parts.settings.database_url:
                log.error("reload refused: [storage] can't change while running; restart instead")
                return False
            self.parts = parts
            self._schedule(parts.settings)
            self._watch_flag.restart_now()  # the watcher picks up the new parts
            log.info("reloaded: %s", self.status_line())
            return True
        finally:
            self._reloading = False
            self.notifier.ready(self.status_line())

    async def _shutdown(self) -> None:
        """Finish the message in flight, stop the watcher, stop the scheduler."""
        if self.scheduler is not None:
            self.scheduler.pause()
        passing = self._passing
        if passing is not None and not passing.done():
            done, _ = await asyncio.wait({passing}, timeout=STOP_GRACE_SECONDS)
            if not done:
                log.warning(
                    "the send in flight did not finish in %.0f s; the next start reconciles it",
                    STOP_GRACE_SECONDS,
                )
                passing.cancel()
        self._watch_flag.event.set()
        inbox = self._inbox
        if inbox is not None and not inbox.done():
            await asyncio.wait({inbox}, timeout=WATCHER_STOP_SECONDS)
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        log.info("stopped")


class _Flag:
    """Tells one watcher run to stop, and whether to start again (after a reload)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.restart = False

    def restart_now(self) -> None:
        self.restart = True
        self.event.set()


def time_pair() -> tuple[float, float]:
    return monotonic_time.time(), monotonic_time.monotonic()


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


def _log_report(report: DispatchReport) -> None:
    for level, sentence in report.sentences(subjects=False):
        log.log(level, "%s", sentence)


def run_daemon(config_path: Path | None, *, notifier: Notifier | None = None) -> int:
    """Run the daemon until it is stopped; the exit code for the process."""
    return asyncio.run(Daemon(config_path, notifier=notifier).run())
