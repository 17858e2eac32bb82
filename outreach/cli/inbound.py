"""Commands for the inbox: watching it, and classifying one message."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import typer

from outreach.cli.common import (
    app,
    context_of,
    inbox_app,
    out,
    print_json,
    reported,
    utc_now,
)
from outreach.errors import (
    ConfigError,
)

if TYPE_CHECKING:
    from outreach.mail.abc import SyncReport


# --- inbound --------------------------------------------------------------------------------


@inbox_app.command("sync")
def inbox_sync(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once", help="One catch-up pass, then exit (default: keep polling).")
    ] = False,
) -> None:
    """Read new messages in the watched folders (read-only) and apply their effects."""
    with reported():
        parts = context_of(ctx).parts()
        if once:
            _print_sync(parts.inbox.sync_once(parts.processor), quiet=False)
            return
        stop = threading.Event()
        out.print(f"watching {parts.inbox.location} (Ctrl-C to stop)", markup=False)
        try:
            parts.inbox.watch(
                parts.processor,
                stop=stop,
                poll_seconds=parts.settings.inbound.poll_seconds,
                on_pass=lambda report: _print_sync(report, quiet=True),
            )
        except KeyboardInterrupt:
            stop.set()


def _print_sync(report: SyncReport, *, quiet: bool) -> None:
    for result in report.results:
        contact = f" from {result.contact}" if result.contact else ""
        out.print(f"{result.message_key}: {result.kind}{contact}: {result.effect}", markup=False)
    if not report.results and not quiet:
        out.print(f"no new messages in {', '.join(report.folders)}", markup=False)


@app.command("classify")
def classify_file(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A message file (.eml).", dir_okay=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show what a message is (reply, out-of-office, bounce, ...), whose it is, and why."""
    with reported():
        from outreach.domain.classify import classify
        from outreach.services.matching import match_message

        try:
            raw = file.read_bytes()
        except OSError as exc:
            raise ConfigError([f"Can't read {file}: {exc.strerror}."]) from None
        state = context_of(ctx)
        settings = state.settings()
        today = utc_now().astimezone(ZoneInfo(settings.practice.timezone)).date()
        found = classify(raw, received=today, authserv_id=settings.inbound.authserv_id)
        with state.store().session() as session:
            matched = match_message(session, found, settings.sender.from_address)
    result = {
        "kind": found.kind,
        "reasons": list(found.reasons),
        "contact": matched.email,
        "trusted": matched.trusted,
        "match": matched.how,
        "message_id": found.message_id,
        "refers_to": list(found.refers_to),
    }
    if found.kind == "bounce":
        result.update(
            recipient=found.recipient, status=found.status, bounce_class=found.bounce_class
        )
    if found.return_date:
        result["return_date"] = found.return_date.isoformat()
    if found.auth_failure:
        result["auth_failure"] = found.auth_failure
    if as_json:
        print_json(result)
        return
    out.print(f"kind: {found.kind}", markup=False)
    out.print(
        f"contact: {matched.email or '(none)'} ({matched.how}"
        f"{'' if matched.trusted or not matched.email else '; flagged, not trusted'})",
        markup=False,
    )
    for reason in found.reasons:
        out.print(f"reason: {reason}", markup=False)
    for key in ("recipient", "status", "bounce_class", "return_date", "auth_failure"):
        if result.get(key):
            out.print(f"{key}: {result[key]}", markup=False)
