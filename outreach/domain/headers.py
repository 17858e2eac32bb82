"""Reading a parsed message safely: header values and its human-readable text, never raising.

Every value a sender controls may be malformed (undecodable bytes, a header the email package
can't parse, a part that lies about its charset); these readers turn all of that into text
or nothing.
"""

from __future__ import annotations

import html
import re
from email.message import EmailMessage, Message
from typing import Any

MAX_TEXT = 100_000  # characters of a body read
_BLOCK_END = re.compile(r"(?i)<\s*(?:br|/p|/div|/tr|/li|/h[1-6]|/blockquote|hr)\b[^>]*>")
_INVISIBLE = re.compile(r"(?is)<(head|style|script|title)\b.*?</\1\s*>")


def header(message: Any, name: str) -> str:
    """A header's value on one line, or "" when absent or unreadable."""
    try:
        value = message.get(name)
    except Exception:
        return ""
    if value is None:
        return ""
    try:
        return " ".join(str(value).split())
    except Exception:
        return ""


def body_text(message: Message) -> str:
    """The message's readable text: the plain part if any, else the HTML made text."""
    part: Message | None = message
    if isinstance(message, EmailMessage):
        try:
            part = message.get_body(preferencelist=("plain", "html"))
        except Exception:
            part = None
    if part is None:
        part = _first_text(message)
    return part_text(part) if part is not None else ""


def part_text(part: Message) -> str:
    """One part's text, HTML turned into lines."""
    try:
        content = part.get_content()  # type: ignore[attr-defined]
    except Exception:
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if not isinstance(content, str):
        return ""
    content = content[: MAX_TEXT * 4]
    if part.get_content_subtype() == "html":
        content = html_text(content)
    return content[:MAX_TEXT]


def html_text(markup: str) -> str:
    """HTML as plain lines: invisible elements dropped, block ends as line breaks."""
    markup = _INVISIBLE.sub(" ", markup)
    markup = _BLOCK_END.sub("\n", markup)
    markup = re.sub(r"<[^>]*>", " ", markup)
    return html.unescape(markup)


def _first_text(message: Message) -> Message | None:
    try:
        for part in message.walk():
            if part.get_content_maintype() == "text":
                return part
    except Exception:
        return None
    return None


__all__ = ["body_text", "header", "html_text", "part_text"]
