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
    result: dict[str, object] = {
        "kind": found.kind,
        "confidence": found.confidence,
        "reasons": list(found.reasons),
        "contact": matched.email,
        "trusted": matched.trusted,
        "match": matched.how,
        "message_id": found.message_id,
        "refers_to": list(found.refers_to),
    }
    if found.kind == "bounce":
        result.update(
            recipient=found.recipient,
            recipients=[f.address for f in found.failed],
            status=found.status,
            bounce_class=found.bounce_class,
            reason=found.reason,
            failures=[
                {
                    "recipient": f.address,
                    "status": f.status,
                    "bounce_class": f.bounce_class,
                    "reason": f.reason,
                    "confidence": f.confidence,
                }
                for f in found.failed
            ],
        )
    elif found.reason:
        result["reason"] = found.reason
    if found.recipients and found.kind in ("complaint", "receipt"):
        result["recipients"] = list(found.recipients)
    if found.new_address:
        result["new_address"] = found.new_address
    if found.language:
        result["language"] = found.language
    if found.kind == "out_of_office":
        result["return_date"] = found.return_date.isoformat() if found.return_date else None
    if found.auth_failure:
        result["auth_failure"] = found.auth_failure
    if as_json:
        print_json(result)
        return
    out.print(f"kind: {found.kind} ({found.confidence} confidence)", markup=False)
    out.print(
        f"contact: {matched.email or '(none)'} ({matched.how}"
        f"{'' if matched.trusted or not matched.email else '; flagged, not trusted'})",
        markup=False,
    )
    for reason in found.reasons:
        out.print(f"reason: {reason}", markup=False)
    for key in (
        "recipient",
        "status",
        "bounce_class",
        "reason",
        "return_date",
        "new_address",
        "auth_failure",
    ):
        if result.get(key):
            out.print(f"{key}: {result[key]}", markup=False)


@inbox_app.command("review")
def inbox_review(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Messages outreach was not sure about (a bounce, opt-out or complaint it only guessed):
    nothing changed for them until you decide with `outreach inbox decide`."""
    with reported():
        from outreach.services.inbound import DECISIONS, held_for_review

        held = held_for_review(context_of(ctx).store())
    if as_json:
        print_json(
            {
                "held": [
                    {
                        "message_key": h.message_key,
                        "received_at": h.received_at.isoformat(),
                        "read_as": h.kind,
                        "contact": h.contact,
                        "detail": h.detail,
                    }
                    for h in held
                ]
            }
        )
        return
    if not held:
        out.print("nothing waits for review", markup=False)
        return
    for h in held:
        what = h.kind
        if h.kind == "bounce":
            what = f"{h.detail.get('klass') or 'soft'} bounce ({h.detail.get('reason')})"
        out.print(
            f"{h.message_key}  {h.received_at:%Y-%m-%d %H:%M} UTC  {h.contact or '(no contact)'}: "
            f"read as {what}",
            markup=False,
        )
        reasons = h.detail.get("reasons")
        for reason in reasons if isinstance(reasons, list) else []:
            out.print(f"    {reason}", markup=False)
    out.print(
        f"decide each with: outreach inbox decide KEY --as {'|'.join(DECISIONS)}", markup=False
    )


@inbox_app.command("decide")
def inbox_decide(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The message's key, as `inbox review` shows it.")],
    kind: Annotated[
        str,
        typer.Option(
            "--as",
            help="What the message is: reply, out_of_office, auto_reply, bounce (the address "
            "is dead), soft_bounce, policy_bounce, unsubscribe, complaint, receipt, or ignore.",
        ),
    ],
    by: Annotated[
        str | None, typer.Option("--by", help="Who decides (default: your login name).")
    ] = None,
) -> None:
    """Apply your reading of a message held for review, and record who decided."""
    with reported():
        import getpass

        parts = context_of(ctx).parts()
        who = by or getpass.getuser()
        effect = parts.processor.decide(key, kind, by=who, now=utc_now())
    out.print(f"{key}: decided as {kind} by {who}: {effect}", markup=False)
