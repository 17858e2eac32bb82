"""Contacts CSV files: header spellings, row validation by line and column, and lossless export.

Pure: bytes in, records and problems out. Nothing here touches the database.

Decisions:
- Header names are matched loosely (case, spaces and punctuation ignored), so the exports of
  Google Contacts (``E-mail 1 - Value``, ``Organization 1 - Name``, ``Labels``) and Outlook
  (``E-mail Address``, ``Company``, ``Categories``) import as they are.
- ``title`` is the form of address used in a greeting ("Dr.", "Pastor"), as Outlook's
  ``Title`` and Google's ``Name Prefix`` are; a job title is kept as the custom field
  ``job_title``.
- Every other column becomes a custom field for templates, keyed by its header in
  snake_case (``Years In Practice`` -> ``years_in_practice``); empty cells are not kept.
- Tags are split on ``;``, ``,`` and Google's `` ::: ``; Google's system labels
  (``* myContacts``) are dropped.
- The delimiter is the one of ``,`` ``;`` and tab that the header line uses most, since
  spreadsheets in many locales save with ``;``.
"""

from __future__ import annotations

import csv
import difflib
import io
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from outreach.domain.fields import (
    check_timezone,
    has_control_characters,
    hides_control_characters,
    normalize_email,
)

STANDARD_FIELDS = (
    "email",
    "first_name",
    "last_name",
    "title",
    "organization",
    "segment",
    "timezone",
    "tags",
    "stage",
)

# Loose header spelling (lower-case, letters and digits only) -> standard field.
HEADER_ALIASES: Mapping[str, str] = {
    "email": "email",
    "emailaddress": "email",
    "email1value": "email",
    "primaryemail": "email",
    "firstname": "first_name",
    "givenname": "first_name",
    "lastname": "last_name",
    "familyname": "last_name",
    "surname": "last_name",
    "title": "title",
    "nameprefix": "title",
    "salutation": "title",
    "organization": "organization",
    "organisation": "organization",
    "organization1name": "organization",
    "organizationname": "organization",
    "company": "organization",
    "segment": "segment",
    "timezone": "timezone",
    "tz": "timezone",
    "tags": "tags",
    "labels": "tags",
    "categories": "tags",
    "groupmembership": "tags",
    "stage": "stage",
    "jobtitle": "job_title",
    "organization1title": "job_title",
}

MAX_LENGTHS: Mapping[str, int] = {
    "email": 320,
    "first_name": 200,
    "last_name": 200,
    "title": 200,
    "organization": 300,
}

PROGRESS_EVERY = 1000
_SURROGATE = re.compile(r"[\udc80-\udcff]")
_TAG_SPLIT = re.compile(r"\s*(?::::|;|,)\s*")


@dataclass(frozen=True)
class ContactRecord:
    """One valid row of a contacts file."""

    line: int
    email: str
    segment: str
    first_name: str | None = None
    last_name: str | None = None
    title: str | None = None
    organization: str | None = None
    timezone: str | None = None
    tags: tuple[str, ...] = ()
    stage: str | None = None
    custom: Mapping[str, str] = field(default_factory=dict)
    #: The standard fields the file has a column for (``--update`` changes only these).
    columns: frozenset[str] = frozenset()


@dataclass
class ParsedContacts:
    """What a file holds: its valid records, and every problem with its line and column."""

    records: list[ContactRecord]
    problems: list[str]
    rows: int = 0


@dataclass(frozen=True)
class _Column:
    index: int
    header: str
    target: str  # a standard field, or a custom field key
    custom: bool

    def where(self, line: int) -> str:
        return f"line {line}, column {self.index + 1} ({self.header})"


def header_key(header: str) -> str:
    """A header without case, spaces or punctuation (``E-mail Address`` -> ``emailaddress``)."""
    return re.sub(r"[^a-z0-9]", "", header.casefold())


def custom_field_key(header: str) -> str:
    """The template name of a custom column (``Years In Practice`` -> ``years_in_practice``)."""
    key = re.sub(r"[^a-z0-9]+", "_", header.casefold()).strip("_")
    return f"f_{key}" if key[:1].isdigit() else key


def split_tags(value: str) -> tuple[str, ...]:
    """The tags in a cell, in order, without duplicates or Google's system labels."""
    tags: dict[str, None] = {}
    for tag in _TAG_SPLIT.split(value.strip()):
        if tag and not tag.startswith("* "):
            tags[tag] = None
    return tuple(tags)


def parse_contacts(
    data: bytes,
    *,
    segments: Collection[str],
    stages: Collection[str],
    default_segment: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ParsedContacts:
    """Validate a whole contacts file, calling ``progress(done_lines, total_lines)`` as it goes."""
    text = data.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    total_lines = text.count("\n") + 1
    parsed = ParsedContacts(records=[], problems=[])
    if not text.strip():
        parsed.problems.append(
            "line 1: the file is empty; expected a header line such as "
            "'email,first_name,last_name,segment'"
        )
        return parsed
    delimiter = _delimiter(text.partition("\n")[0])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows = _numbered_rows(reader, parsed.problems)
    first = next(rows, None)
    if first is None:
        return parsed
    header_line, header = first
    columns = _columns(header, header_line, parsed.problems)
    targets = {c.target for c in columns}
    if "email" not in targets:
        parsed.problems.append(_missing("email"))
    if "segment" not in targets and default_segment is None:
        parsed.problems.append(
            _missing("segment") + "; or give --segment NAME to put every row in one segment"
        )
    if parsed.problems:
        return parsed
    validator = _RowValidator(columns, segments, stages, default_segment)
    seen: dict[str, int] = {}
    for line, cells in rows:
        if progress and line % PROGRESS_EVERY == 0:
            progress(line, total_lines)
        if not any(cell.strip() for cell in cells):
            continue  # blank lines, and rows of empty cells that spreadsheets leave behind
        parsed.rows += 1
        if len(cells) != len(header):
            parsed.problems.append(
                f"line {line}: {len(cells)} fields, but the header has {len(header)}"
            )
            continue
        record = validator.record(line, cells, parsed.problems)
        if record is None:
            continue
        key = record.email.casefold()
        if key in seen:
            parsed.problems.append(
                f"{validator.column('email').where(line)}: {record.email} is a duplicate of "
                f"line {seen[key]}"
            )
            continue
        seen[key] = line
        parsed.records.append(record)
    if progress:
        progress(total_lines, total_lines)
    return parsed


def _missing(name: str) -> str:
    spellings = sorted({alias for alias, target in HEADER_ALIASES.items() if target == name})
    return f"line 1: missing required column {name!r} (accepted headers: {', '.join(spellings)})"


def _delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _numbered_rows(
    reader: Iterator[list[str]], problems: list[str]
) -> Iterator[tuple[int, list[str]]]:
    """Rows with the line each starts on; a malformed row ends the file with a problem."""
    line_num = getattr(reader, "line_num", 0)
    start = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.append(f"line {start}: malformed CSV ({exc}); check the quotes on this line")
            return
        yield start, cells
        line_num = reader.line_num  # type: ignore[attr-defined]
        start = line_num + 1


def _columns(header: list[str], line: int, problems: list[str]) -> list[_Column]:
    columns: list[_Column] = []
    by_target: dict[str, _Column] = {}
    for index, raw in enumerate(header):
        name = raw.strip()
        if _SURROGATE.search(name):
            problems.append(f"line {line}, column {index + 1}: {_not_utf8(name)}")
            continue
        if not name:
            problems.append(f"line {line}, column {index + 1}: the column has no name")
            continue
        target = HEADER_ALIASES.get(header_key(name))
        custom = target is None or target not in STANDARD_FIELDS
        target = target or custom_field_key(name)
        if not target:
            problems.append(
                f"line {line}, column {index + 1} ({name}): the name has no letters "
                "or digits to use as a field name"
            )
            continue
        column = _Column(index, name, target, custom)
        if target in by_target:
            other = by_target[target]
            problems.append(
                f"line {line}, column {index + 1} ({name}): gives {target!r} again, like column "
                f"{other.index + 1} ({other.header}); keep one of them"
            )
            continue
        by_target[target] = column
        columns.append(column)
    return columns


def _not_utf8(value: str) -> str:
    raw = _SURROGATE.search(value)
    byte = ord(raw.group()) - 0xDC00 if raw else 0
    return f"holds bytes that are not UTF-8 (0x{byte:02X}); save the file as UTF-8 CSV"


@dataclass(frozen=True)
class _RowValidator:
    columns: list[_Column]
    segments: Collection[str]
    stages: Collection[str]
    default_segment: str | None

    def column(self, target: str) -> _Column:
        return next(c for c in self.columns if c.target == target)

    def record(self, line: int, cells: list[str], problems: list[str]) -> ContactRecord | None:
        """The row as a record, or None after adding its problems to ``problems``."""
        values: dict[str, Any] = {}
        custom: dict[str, str] = {}
        count = len(problems)
        for column in self.columns:
            value = cells[column.index].strip()
            problem = _check_cell(value)
            if problem is None and value and not column.custom:
                try:
                    values[column.target] = self._standard_value(column.target, value)
                except ValueError as exc:
                    problem = str(exc)
            elif problem is None and value:
                custom[column.target] = value
            if problem:
                problems.append(f"{column.where(line)}: {problem}")
        if "email" not in values and len(problems) == count:
            problems.append(f"{self.column('email').where(line)}: the email address is empty")
        if "segment" not in values and len(problems) == count:
            if self.default_segment is None:
                problems.append(f"{self.column('segment').where(line)}: the segment is empty")
            values["segment"] = self.default_segment
        if len(problems) != count:
            return None
        present = frozenset(c.target for c in self.columns if not c.custom)
        return ContactRecord(line=line, custom=custom, columns=present, **values)

    def _standard_value(self, name: str, value: str) -> object:
        limit = MAX_LENGTHS.get(name)
        if limit and len(value) > limit:
            raise ValueError(f"is {len(value)} characters long; at most {limit} fit")
        if name == "email":
            return normalize_email(value)
        if name == "segment":
            return _one_of(value, self.segments, "segment")
        if name == "stage":
            return _one_of(value, self.stages, "stage")
        if name == "timezone":
            return check_timezone(value)
        if name == "tags":
            return split_tags(value)
        return value


def _check_cell(value: str) -> str | None:
    if _SURROGATE.search(value):
        return _not_utf8(value)
    if hides_control_characters(value):
        return (
            "holds an encoded word (=?...?=) that decodes to a line break or NUL, or can't be "
            "decoded; a field must be one line"
        )
    if has_control_characters(value):
        return "contains a line break or NUL; a field must be one line"
    return None


def _one_of(value: str, known: Collection[str], what: str) -> str:
    if value in known:
        return value
    near = difflib.get_close_matches(value.lower(), list(known), n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    raise ValueError(f"unknown {what} {value!r} (configured: {', '.join(known)}){hint}")


EXPORT_COLUMNS = STANDARD_FIELDS


def write_contacts(records: Iterable[Mapping[str, Any]], out: TextIO) -> int:
    """Write contacts as CSV that ``parse_contacts`` reads back to the same values.

    Each record maps the standard fields (tags as a sequence) plus ``custom``; custom
    fields become extra columns after the standard ones, in first-seen order.
    """
    rows = list(records)
    custom_keys: dict[str, None] = {}
    for row in rows:
        for key in row.get("custom") or {}:
            custom_keys[key] = None
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*EXPORT_COLUMNS, *custom_keys])
    for row in rows:
        custom = row.get("custom") or {}
        cells = []
        for name in EXPORT_COLUMNS:
            value = row.get(name)
            if name == "tags":
                value = "; ".join(value or ())
            cells.append("" if value is None else str(value))
        cells += [str(custom.get(key, "")) for key in custom_keys]
        writer.writerow(cells)
    return len(rows)
