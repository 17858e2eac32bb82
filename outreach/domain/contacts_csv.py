"""Contacts from CSV files and commands: header spellings, checks by line and column, export.

Pure: bytes in, records and problems out. Nothing here touches the database.

Decisions:
- The text encoding is detected or given (``exports.decode_export``).
- Header names are matched loosely (case, spaces and punctuation ignored), so the exports of
  Google Contacts (``E-mail 1 - Value``, ``Organization Name``, ``Labels``) and Outlook
  (``E-mail Address``, ``Company``, ``Categories``) import as they are.
- ``title`` is the form of address used in a greeting ("Dr.", "Pastor"), as Outlook's
  ``Title`` and Google's ``Name Prefix`` are; a job title is kept as the custom field
  ``job_title``.
- Every other column becomes a custom field for templates, keyed by its header in
  snake_case (``Years In Practice`` -> ``years_in_practice``); empty cells and filler
  (``exports.is_filler``: Outlook's ``Gender = Unspecified``...) are not kept.
- Standard fields (name, title, organization, address...) can reach a message's headers, so a
  line break in one is refused; a custom field may hold several lines (a postal address,
  notes), kept with ``\n`` line ends. A template that puts one in ``Subject:`` fails when it
  is rendered, as any line break in a header does; NUL is refused everywhere.
- A segment is named by its name or its ``label`` (any case), or by a label that
  ``[import.segment_labels]`` maps to one. ``segment_column`` reads the segment from a column
  of labels (Google's ``Labels``: ``Psychiatrists ::: * myContacts``; Outlook's
  ``Categories``): exactly one of a row's labels must name a segment; its other labels
  become tags.
- Tags are split on ``;``, ``,`` and Google's `` ::: ``; Google's system labels
  (``* myContacts``, ``* starred``) are dropped.
- Google puts a contact's second address of the same kind in the same cell
  (``a@x ::: b@x``); the first is the contact's address, the others the custom field
  ``other_emails``.
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

from outreach.domain.exports import decode_export, is_filler
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
    "organizationtitle": "job_title",
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
_NUL = re.compile(r"[\x00]")
_LINE_END = re.compile(r"\r\n?")


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
    #: The encoding the file was read in ("UTF-8", "Windows-1252"...).
    encoding: str = "UTF-8"


@dataclass(frozen=True)
class _Column:
    index: int
    header: str
    target: str  # a standard field, or a custom field key
    custom: bool
    labels: bool = False  # the segment, read from a column of labels (``segment_column``)

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


def segment_names(
    labels: Mapping[str, str], configured: Mapping[str, str] | None = None
) -> tuple[dict[str, str], list[str]]:
    """What names a segment: each segment's name and ``label`` (``labels``: name -> label),
    and the ``[import.segment_labels]`` (``configured``: label -> segment name or label).

    Returns (casefolded name or label -> segment name, problems naming each configured label
    whose segment doesn't exist).
    """
    names: dict[str, str] = {}
    for name, label in labels.items():
        names.setdefault(label.casefold(), name)
    names.update((name.casefold(), name) for name in labels)
    problems = []
    for label, target in (configured or {}).items():
        segment = names.get(target.casefold()) if target.strip() else None
        if segment is None:
            problems.append(
                f"import.segment_labels.{label!r}: {target!r} is not a segment "
                f"(configured: {', '.join(labels)})"
            )
        else:
            names[label.strip().casefold()] = segment
    return names, problems


def find_segment(value: str, names: Mapping[str, str]) -> str:
    """The segment that ``value`` names (its name or a label, any case), or ValueError."""
    segment = names.get(value.strip().casefold())
    if segment is not None:
        return segment
    known = sorted(set(names.values()), key=list(names.values()).index)
    near = difflib.get_close_matches(value.casefold(), list(names), n=1)
    hint = f"; did you mean {names[near[0]]!r}?" if near else ""
    raise ValueError(f"unknown segment {value!r} (configured: {', '.join(known)}){hint}")


def parse_contacts(
    data: bytes,
    *,
    segments: Collection[str],
    stages: Collection[str],
    default_segment: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    names: Mapping[str, str] | None = None,
    segment_column: str = "",
    encoding: str = "",
) -> ParsedContacts:
    """Validate a whole contacts file, calling ``progress(done_lines, total_lines)`` as it goes.

    ``names`` (from ``segment_names``) says which labels name which segment (default: the
    segment names only); ``segment_column`` reads segments from a column of labels;
    ``encoding`` forces the file's encoding (default: detected).
    """
    parsed = ParsedContacts(records=[], problems=[])
    try:
        decoded = decode_export(data, encoding)
    except ValueError as exc:
        problem = str(exc)
        parsed.problems.append(problem if problem.startswith("line ") else f"line 1: {problem}")
        return parsed
    text, parsed.encoding = decoded.text, decoded.encoding
    total_lines = text.count("\n") + 1
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
    columns = _columns(header, header_line, parsed.problems, segment_column)
    parsed.problems += _header_problems(columns, header, segment_column, default_segment)
    if parsed.problems:
        return parsed
    lookup = dict(names) if names is not None else {s.casefold(): s for s in segments}
    validator = _RowValidator(columns, lookup, stages, default_segment)
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


def _header_problems(
    columns: list[_Column], header: list[str], segment_column: str, default_segment: str | None
) -> list[str]:
    problems = []
    targets = {c.target for c in columns}
    if "email" not in targets:
        problems.append(_missing("email"))
    if segment_column and not any(c.labels for c in columns):
        shown = ", ".join(h.strip() for h in header if h.strip())
        problems.append(
            f"line 1: no column {segment_column!r} to read segments from ([import] "
            f"segment_column or --segment-from); the columns are: {shown}"
        )
    elif "segment" not in targets and default_segment is None:
        problems.append(
            _missing("segment") + "; or give --segment NAME to put every row in one segment, "
            "or --segment-from COLUMN to read segments from a column of labels"
        )
    return problems


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


def _columns(
    header: list[str], line: int, problems: list[str], segment_column: str = ""
) -> list[_Column]:
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
        labels = bool(segment_column) and header_key(name) == header_key(segment_column)
        target = "segment" if labels else HEADER_ALIASES.get(header_key(name))
        custom = target is None or target not in STANDARD_FIELDS
        target = target or custom_field_key(name)
        if not target:
            problems.append(
                f"line {line}, column {index + 1} ({name}): the name has no letters "
                "or digits to use as a field name"
            )
            continue
        column = _Column(index, name, target, custom, labels)
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
    return (
        f"holds a byte that is not UTF-8 (0x{byte:02X}) in a file read as UTF-8; retype the "
        "cell or save the file as UTF-8 CSV, or give its encoding with --encoding"
    )


@dataclass(frozen=True)
class _RowValidator:
    columns: list[_Column]
    names: Mapping[str, str]  # casefolded name or label -> segment
    stages: Collection[str]
    default_segment: str | None

    def column(self, target: str) -> _Column:
        return next(c for c in self.columns if c.target == target)

    def record(self, line: int, cells: list[str], problems: list[str]) -> ContactRecord | None:
        """The row as a record, or None after adding its problems to ``problems``."""
        values: dict[str, Any] = {}
        custom: dict[str, str] = {}
        more_tags: tuple[str, ...] = ()
        count = len(problems)
        for column in self.columns:
            problem, tags = self._cell(column, cells[column.index].strip(), values, custom)
            more_tags += tags
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
        if more_tags:
            values["tags"] = tuple(dict.fromkeys((*values.get("tags", ()), *more_tags)))
        present = {c.target for c in self.columns if not c.custom}
        if any(c.labels for c in self.columns):
            present.add("tags")
        return ContactRecord(line=line, custom=custom, columns=frozenset(present), **values)

    def _cell(
        self, column: _Column, value: str, values: dict[str, Any], custom: dict[str, str]
    ) -> tuple[str | None, tuple[str, ...]]:
        """Put one cell's value in ``values`` or ``custom``: (its problem, labels for tags)."""
        problem = _check_cell(value, several_lines=column.custom)
        if problem is not None:
            return problem, ()
        if column.labels:
            try:
                segment, more_tags = self._segment_from_labels(value)
            except ValueError as exc:
                return str(exc), ()
            if segment is not None:
                values["segment"] = segment
            return None, more_tags
        if not value:
            return None, ()
        if column.custom:
            if not is_filler(header_key(column.header), value):
                custom[column.target] = _LINE_END.sub("\n", value)
            return None, ()
        try:
            values[column.target] = field_value(column.target, value, self.names, self.stages)
        except ValueError as exc:
            return str(exc), ()
        if column.target == "email" and ":::" in value:
            custom["other_emails"] = ", ".join(split_tags(value)[1:])
        return None, ()

    def _segment_from_labels(self, value: str) -> tuple[str | None, tuple[str, ...]]:
        """The segment a cell of labels names (None: none, and a default applies) and the
        other labels, which become tags; ValueError when none or two name a segment."""
        whole = self.names.get(value.casefold())
        if whole is not None:
            return whole, ()
        labels = split_tags(value)
        found: dict[str, str] = {}
        for label in labels:
            segment = self.names.get(label.casefold())
            if segment is not None:
                found.setdefault(segment, label)
        rest = tuple(label for label in labels if label.casefold() not in self.names)
        if len(found) > 1:
            named = ", ".join(f"{seg} from {label!r}" for seg, label in found.items())
            raise ValueError(f"the labels name {len(found)} segments ({named}); keep one")
        if found:
            return next(iter(found)), rest
        if self.default_segment is not None:
            return None, rest
        seen = ", ".join(repr(label) for label in labels) or "the cell has none"
        raise ValueError(
            f"no label names a segment ({seen}); map one in [import.segment_labels], "
            "or give --segment for the rows without one"
        )


def field_value(name: str, value: str, names: Mapping[str, str], stages: Collection[str]) -> object:
    """A standard field's value checked and normalized (``segment`` through ``names``, as
    ``find_segment``; ``tags`` split); ValueError says what is wrong."""
    limit = MAX_LENGTHS.get(name)
    if limit and len(value) > limit:
        raise ValueError(f"is {len(value)} characters long; at most {limit} fit")
    if name == "email":
        return normalize_email(split_tags(value)[0] if ":::" in value else value)
    if name == "segment":
        return find_segment(value, names)
    if name == "stage":
        return _one_of(value, stages, "stage")
    if name == "timezone":
        return check_timezone(value)
    if name == "tags":
        return split_tags(value)
    return value


def _check_cell(value: str, *, several_lines: bool = False) -> str | None:
    if _SURROGATE.search(value):
        return _not_utf8(value)
    if several_lines:
        return "contains a NUL character" if _NUL.search(value) else None
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


# The fields ``contacts add --set`` and ``contacts edit --set`` may give (``email`` is who the
# contact is; ``stage`` moves with ``outreach stage set``, which records why).
EDITABLE_FIELDS = (
    "first_name",
    "last_name",
    "title",
    "organization",
    "segment",
    "timezone",
    "tags",
)
_CUSTOM_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class FieldEdit:
    """One ``FIELD=VALUE`` of a command: a standard field or a custom one; ``value`` None
    clears it (tags: an empty tuple)."""

    name: str
    value: object
    custom: bool


def field_edit(
    assignment: str, names: Mapping[str, str], custom: Collection[str] = ()
) -> FieldEdit:
    """``FIELD=VALUE`` checked like a file's cell (``FIELD=`` clears the field); ``custom`` are
    the custom fields the contact already has. ValueError says what is wrong."""
    name, equals, value = assignment.partition("=")
    name, value = name.strip(), value.strip()
    if not equals or not name:
        raise ValueError(f"{assignment!r}: write FIELD=VALUE (FIELD= clears the field)")
    if name == "email":
        raise ValueError(
            "email: the address is who the contact is; to change it, remove the contact "
            "and add it again"
        )
    if name == "stage":
        raise ValueError("stage: move a contact with 'outreach stage set', which records why")
    if name not in EDITABLE_FIELDS and name not in custom:
        _check_custom_name(name)
    is_custom = name not in EDITABLE_FIELDS
    problem = _check_cell(value, several_lines=is_custom)
    if problem:
        raise ValueError(f"{name}: {problem}")
    if not value:
        if name == "segment":
            raise ValueError("segment: every contact belongs to a segment; it can't be cleared")
        return FieldEdit(name, () if name == "tags" else None, is_custom)
    if is_custom:
        return FieldEdit(name, _LINE_END.sub("\n", value), True)
    try:
        return FieldEdit(name, field_value(name, value, names, ()), False)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _check_custom_name(name: str) -> None:
    near = difflib.get_close_matches(name, [*EDITABLE_FIELDS, "email", "stage"], n=1, cutoff=0.8)
    if near:
        raise ValueError(f"unknown field {name!r}; did you mean {near[0]!r}?")
    if not _CUSTOM_KEY.match(name):
        raise ValueError(
            f"unknown field {name!r}: the fields are {', '.join(EDITABLE_FIELDS)}, or a "
            "custom field in lower case with underscores (years_in_practice)"
        )


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
