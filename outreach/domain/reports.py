"""Machine-readable reports about our messages: delivery status (RFC 3464 and its UTF-8 form,
RFC 6533), read receipts (RFC 8098) and abuse complaints (RFC 5965). Pure: a parsed message
in, a reading out.

A delivery report is read block by block: each per-recipient block's ``Action`` decides
whether that recipient failed (``failed``; ``delayed`` is a soft failure) or the report is a
receipt (``delivered``, ``relayed``, ``expanded``); the failed address is the
Original-Recipient when given (what we sent to, before an alias or forward rewrote it), else
the Final-Recipient. The part is found wherever it sits, also outside a multipart/report (some
servers wrap it in multipart/mixed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from typing import Any

from outreach.domain.bounce_reasons import STATUS, FailureReading, read_failure

DELIVERY_STATUS = ("message/delivery-status", "message/global-delivery-status")
DISPOSITION = ("message/disposition-notification", "message/global-disposition-notification")
FEEDBACK = "message/feedback-report"
REPORT = "multipart/report"
_SUCCESS = ("delivered", "relayed", "expanded", "deliverable")  # the last: an address check
MAX_BLOCKS = 200  # per-recipient blocks read from one report
_RAW_BYTE = re.compile("[\udc80-\udcff]")  # an undecoded 8-bit byte (surrogateescape)
_FIELD = re.compile(r"^([A-Za-z0-9-]+)[ \t]*:[ \t]*(.*)$")
_BLOCK_BREAK = re.compile(r"\r?\n[ \t]*\r?\n")


@dataclass(frozen=True)
class Failure:
    """One recipient the report says the message did not reach."""

    address: str  # as written in the report; the caller makes it safe
    reading: FailureReading
    text: str = ""  # what the report's block says about it (Diagnostic-Code), in memory only
    delayed: bool = False  # Action: delayed (still being retried)


@dataclass(frozen=True)
class Report:
    """What a report part says. ``kind`` is bounce, receipt or complaint."""

    kind: str
    failures: tuple[Failure, ...] = ()
    receipts: int = 0  # recipients the report says were reached
    named: tuple[str, ...] = ()  # every address it names (for a complaint: the recipient)
    message_ids: tuple[str, ...] = ()  # our message it is about, when it says
    detail: str = ""  # Action/Disposition/Feedback-Type, for the reasons line


def read_report(message: Message) -> Report | None:
    """The report a message carries, if any (a delivery-status, disposition-notification or
    feedback-report part)."""
    for part in _parts(message):
        kind = part.get_content_type()
        if kind in DELIVERY_STATUS:
            found = _delivery(part)
            if found is not None:
                return found
        elif kind in DISPOSITION:
            return _disposition(part)
        elif kind == FEEDBACK:
            return _feedback(part)
    return None


def _parts(message: Message, depth: int = 0) -> Iterator[Message]:
    """Every part, looking inside an attached message only when it is itself a report (a
    security gateway that wraps the bounce it relays); the returned copy of our own message
    is never one."""
    yield message
    if depth > 5 or not message.is_multipart():
        return
    for part in message.get_payload():
        if not isinstance(part, Message):
            continue
        if part.get_content_type() in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            for attached in inner if isinstance(inner, list) else []:
                if isinstance(attached, Message) and attached.get_content_type() == REPORT:
                    yield from _parts(attached, depth + 1)
        else:
            yield from _parts(part, depth + 1)


def blocks(part: Message) -> list[dict[str, str]]:
    """A report part's field blocks (the per-message block, then one per recipient), field
    names lower-case, the first of a repeated field kept."""
    payload = part.get_payload()
    found: list[dict[str, str]] = []
    if isinstance(payload, list):
        # The email package reads each block as a message's headers; a block it could not
        # split is left in that message's body.
        for block in payload:
            if not isinstance(block, Message):
                continue
            fields: dict[str, str] = {}
            for name, value in block.items():
                fields.setdefault(name.lower(), _text(value))
            found.append(fields)
            rest = block.get_payload(decode=True)  # bytes: a UTF-8 address stays whole
            if isinstance(rest, bytes) and rest.strip():
                found += _text_blocks(rest.decode("utf-8", "replace"))
    else:
        raw = part.get_payload(decode=True)
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload or "")
        found += _text_blocks(text)
    return found[:MAX_BLOCKS]


def _text(value: Any) -> str:
    """A field's value on one line; UTF-8 bytes (RFC 6533 reports) decoded as such."""
    try:
        text = str(value)
    except Exception:
        return ""
    if _RAW_BYTE.search(text):
        text = text.encode("ascii", "surrogateescape").decode("utf-8", "replace")
    return " ".join(text.split())


def _text_blocks(text: str) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []
    for chunk in _BLOCK_BREAK.split(text[:200_000]):
        fields: dict[str, str] = {}
        name = None
        for line in chunk.splitlines():
            if line[:1] in (" ", "\t") and name:
                fields[name] += " " + line.strip()
                continue
            match = _FIELD.match(line)
            if match:
                name = match.group(1).lower()
                if name in fields:
                    name = None  # a repeated field: keep the first
                    continue
                fields[name] = match.group(2).strip()
        if fields:
            found.append(fields)
    return found


def typed_address(value: str) -> str:
    """The address of an ``address-type; address`` field (rfc822; a@b, utf-8; j@b)."""
    return value.rsplit(";", maxsplit=1)[-1].strip().strip("<>").strip()


def _delivery(part: Message) -> Report | None:
    failures: list[Failure] = []
    named: list[str] = []
    ids: list[str] = []
    receipts = 0
    actions: list[str] = []
    for fields in blocks(part):
        envid = fields.get("original-envelope-id")
        if envid:
            ids.append(envid)
        recipient = fields.get("original-recipient") or fields.get("final-recipient")
        if not recipient:
            continue
        address = typed_address(recipient)
        for field in ("original-recipient", "final-recipient"):
            if fields.get(field):
                named.append(typed_address(fields[field]))
        # "expanded (to multi-recipient alias)": the action is the first word.
        action = (fields.get("action", "").strip().lower().split() or [""])[0]
        status_field = STATUS.search(fields.get("status", ""))
        status = status_field.group(0) if status_field else None
        if not action and status:
            action = {"2": "delivered", "4": "delayed", "5": "failed"}[status[0]]
        actions.append(action or "none")
        if action in _SUCCESS:
            receipts += 1
            continue
        if action not in ("failed", "delayed") and not (status or "").startswith(("4", "5")):
            continue  # neither success nor failure: says nothing about the address
        # The remote server's words only: a Status field's comment is the RFC 3463 label of
        # its code ("5.2.1 (mailbox disabled)"), not what the server said.
        text = fields.get("diagnostic-code", "")
        reading = read_failure(
            status, text, delayed=action == "delayed", gave_up=action == "failed"
        )
        failures.append(Failure(address, reading, text, action == "delayed"))
    if not failures and not receipts:
        return None
    detail = "Action: " + ", ".join(dict.fromkeys(actions))
    if failures:
        return Report("bounce", tuple(failures), receipts, tuple(named), tuple(ids), detail)
    return Report("receipt", (), receipts, tuple(named), tuple(ids), detail)


def _merged(part: Message) -> dict[str, str]:
    """A report part's fields from all its blocks in one mapping, the first of each kept."""
    fields: dict[str, str] = {}
    for block in blocks(part):
        for name, value in block.items():
            fields.setdefault(name, value)
    return fields


def _disposition(part: Message) -> Report:
    fields = _merged(part)
    ids = [fields["original-message-id"]] if fields.get("original-message-id") else []
    named = [typed_address(fields[f]) for f in ("final-recipient",) if fields.get(f)]
    disposition = fields.get("disposition", "").rsplit(";", 1)[-1].strip().lower()
    return Report(
        "receipt", (), 1, tuple(named), tuple(ids), f"Disposition: {disposition or 'none'}"
    )


def _feedback(part: Message) -> Report:
    fields = _merged(part)
    named = [typed_address(fields[f]) for f in ("original-rcpt-to",) if fields.get(f)]
    kind = fields.get("feedback-type", "").strip().lower()
    return Report("complaint", (), 0, tuple(named), (), f"Feedback-Type: {kind or 'none'}")


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def read_notification(text: str) -> Report | None:
    """An Amazon SES event published by email (SNS): a JSON bounce, complaint or delivery
    notification about one of our messages, if ``text`` is one."""
    start = text.find("{")
    if start < 0 or '"notificationType"' not in text[:2000]:
        return None
    try:
        event, _ = json.JSONDecoder().raw_decode(text[start:])
    except ValueError:
        return None
    if not isinstance(event, dict):
        return None
    kind = str(event.get("notificationType") or event.get("eventType") or "").lower()
    mail = _object(event.get("mail"))
    ids = [str(mail["messageId"])] if mail.get("messageId") else []
    section = _object(event.get(kind))
    if kind == "bounce":
        failures = []
        transient = str(section.get("bounceType", "")).lower() == "transient"
        for item in section.get("bouncedRecipients") or []:
            if not isinstance(item, dict) or not item.get("emailAddress"):
                continue
            text = f"{item.get('diagnosticCode', '')} {section.get('bounceSubType', '')}"
            status = STATUS.search(str(item.get("status", "")))
            reading = read_failure(
                status.group(0) if status else None, text, delayed=transient, gave_up=True
            )
            failures.append(Failure(str(item["emailAddress"]), reading, text, transient))
        if failures:
            named = tuple(f.address for f in failures)
            return Report("bounce", tuple(failures), 0, named, tuple(ids), "SES bounce")
        return None
    if kind == "complaint":
        named = tuple(
            str(item["emailAddress"])
            for item in section.get("complainedRecipients") or []
            if isinstance(item, dict) and item.get("emailAddress")
        )
        return Report("complaint", (), 0, named, tuple(ids), "SES complaint")
    if kind == "delivery":
        named = tuple(str(a) for a in section.get("recipients") or [])
        return Report("receipt", (), len(named), named, tuple(ids), "SES delivery")
    return None


__all__ = ["Failure", "Report", "blocks", "read_notification", "read_report", "typed_address"]
