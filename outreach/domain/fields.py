"""Validation of what contacts and the configuration share: addresses, time zones, one-line text."""

from __future__ import annotations

import hashlib
import re
import zoneinfo
from contextlib import suppress
from datetime import UTC, datetime
from email.errors import MessageError
from email.header import decode_header, make_header
from email.policy import default as default_policy
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

from outreach.errors import ConfigError

# CR and LF would let a value smuggle extra headers into a message (header injection), and
# so would the other characters that Python's str.splitlines (the email package's parser)
# and other mail software take as line ends: VT, FF, FS, GS, RS, NEL, U+2028 and U+2029.
# NUL breaks SMTP and most databases. Refuse them wherever a value enters outreach.
_CONTROL = re.compile(r"[\r\n\x00\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


EARLIEST_YEAR, LATEST_YEAR = 1970, 9000  # what --now and OUTREACH_NOW may say


def normalize_email(value: str) -> str:
    """The address in normalized form, or ValueError saying what is wrong with it.

    The domain is lower-cased and Unicode-normalized by email-validator; the local part
    keeps its case (some servers care), and uniqueness is decided by ``email_key``.
    ``test_environment`` lets through the ``.test`` domain reserved for testing
    (RFC 2606), which the test suite's own mail servers use; deliverability (DNS) is
    not checked, because outreach must work offline and a lookup is no proof anyway.
    """
    value = value.strip()
    if not value:
        raise ValueError("email address is empty")
    if has_control_characters(value):
        raise ValueError("email address contains a line break or NUL")
    # Nearly every address is a plain ASCII local part at a domain many others share: the
    # domain is checked by email-validator once (cached), the local part by its dot-atom
    # grammar. Anything else, and any address that fails, takes the whole check, whose error
    # is the one told.
    local, _, domain = value.rpartition("@")
    quick = (
        local
        and len(local) <= MAX_LOCAL
        and len(value) <= MAX_ADDRESS
        and _DOT_ATOM.fullmatch(local)
        # email-validator lower-cases these role names (RFC 2142): left to it
        and local.lower() not in CASE_INSENSITIVE_MAILBOX_NAMES
    )
    if quick:
        checked = _checked_domain(domain)
        # An internationalized domain is longer in its ASCII form: lengths left to it too.
        if checked is not None and checked.isascii():
            return f"{local}@{checked}"
    try:
        return validate_email(value, check_deliverability=False, test_environment=True).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"{value!r} is not a valid email address: {exc}") from None


# RFC 5322 section 3.2.3 dot-atom, ASCII: atext runs joined by single dots.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
MAX_LOCAL, MAX_ADDRESS = 64, 254  # RFC 5321 section 4.5.3.1


@lru_cache(maxsize=16384)  # a file cycling through more domains than this misses every time
def _checked_domain(domain: str) -> str | None:
    """The domain as email-validator normalizes it, or None if it refuses it."""
    try:
        return validate_email(
            f"x@{domain}", check_deliverability=False, test_environment=True
        ).domain
    except EmailNotValidError:
        return None


def email_key(normalized: str) -> str:
    """The case-insensitive identity of a normalized address (two contacts can't share one)."""
    return normalized.casefold()


@lru_cache(maxsize=1024)
def check_timezone(name: str) -> str:
    """``name`` if it is an IANA time zone (``America/Chicago``), else ValueError."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. 'America/New_York')") from None
    return name


def has_control_characters(value: str) -> bool:
    """True if ``value`` holds a line break or NUL, which no single-line field may contain:
    as it is, or hidden in an RFC 2047 encoded word (``hides_control_characters``)."""
    return _CONTROL.search(value) is not None or hides_control_characters(value)


def hides_control_characters(value: str) -> bool:
    """True if ``value`` has no line break or NUL itself, but an RFC 2047 encoded word in it
    decodes to one (``=?utf-8?q?Di=0D=0ABcc:_x@example.com?=``).

    The email package decodes encoded words when it parses a header, and Pythons without
    the CVE-2024-6923 fix write the decoded text back out as it is: a real header line.
    Both of its decoders are asked: the header parser's (the one that matters here) and the
    older ``decode_header``, which reads some malformed words the parser does not.
    """
    if "=?" not in value or _CONTROL.search(value):
        return False
    try:
        decoded = [str(default_policy.header_factory("x-outreach-check", value))]
    except (MessageError, LookupError, UnicodeError, ValueError):
        return True  # a word the serializer's own parser chokes on must not reach it
    # decode_header gives up on unknown charsets and bad base64, which the parser still reads.
    with suppress(MessageError, LookupError, UnicodeError, ValueError):
        decoded.append(str(make_header(decode_header(value))))
    return any(_CONTROL.search(text) for text in decoded)


def parse_local_time(value: str, zone: zoneinfo.ZoneInfo, what: str) -> datetime:
    """An ISO 8601 time between the years 1970 and 9000 (room for any forecast after it);
    without an offset it is read in ``zone``. ConfigError names ``what``."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            [f"{what}: {value!r} is not an ISO 8601 time such as 2026-03-02T09:30"]
        ) from None
    local = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone)
    try:
        year = local.astimezone(UTC).year
    except OverflowError:
        year = 0
    if not EARLIEST_YEAR <= year <= LATEST_YEAR:
        raise ConfigError(
            [f"{what}: {value!r} must be between the years {EARLIEST_YEAR} and {LATEST_YEAR}"]
        )
    return local


def full_name(first_name: str | None, last_name: str | None) -> str:
    """First and last name as people write them; empty when both are missing."""
    return " ".join(part for part in (first_name, last_name) if part)


def erased_key(key: str) -> str:
    """What stays of an address erased at its owner's request (``contacts remove --forget``):
    its ``email_key``'s SHA-256, enough to recognize it again and no more."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
