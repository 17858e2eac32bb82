"""Contact exports as address books write them: their text encodings and their filler columns.

Pure: bytes in, text out; a header and a cell in, whether the cell says anything.

Decisions:
- A byte-order mark decides (UTF-8, UTF-16 as Outlook's and Excel's "Unicode" files, UTF-32);
  else a file that is valid UTF-8 is UTF-8; else a file that is evidently UTF-8 text with a
  few stray bytes (a cell edited in Excel) is read as UTF-8, and each cell with a byte that
  isn't is a problem naming its line and column: reading it in a code page would garble
  every other name (Björn as BjĂ¶rn), silently. Evidently UTF-8: some line with non-ASCII
  text in it is valid UTF-8, or well-formed UTF-8 sequences outnumber the stray bytes (a
  code page's text pairs into a UTF-8 sequence only by chance, as a capital letter before a
  Ukrainian i does in Windows-1251, so a line of it keeps stray bytes, and they are most of
  its non-ASCII bytes).
- Else charset-normalizer chooses among the Windows code pages (the "ANSI" encodings Outlook
  and Excel save in), and Windows-1252 wins a tie: a few names read equally well in
  Windows-1250 or -1252 (Núñez or Núńez), and a practice's address book is most often in
  Windows-1252. A tie without Windows-1252 whose readings differ (a short Cyrillic file
  reads as well in Windows-1251 as in -1253) is refused, showing each reading, for the
  encoding to be given. The import names the encoding it read, and a Central European file
  that was read wrong is imported again with ``--encoding windows-1250``. A file none of them
  reads is read as UTF-8, as above. ``--encoding`` (or ``[import] encoding``) forces one
  encoding, and a byte it can't read is a problem naming its line.
- Filler: Outlook writes ``Gender = Unspecified``, ``Private = False``, ``Sensitivity =
  Normal``, ``Priority = Normal``, ``Birthday = 0/0/00``... for every contact; such a cell is
  not kept as a custom field (another value in those columns is). Columns that only restate
  another one (an address's display name or type, Google's e-mail labels, ``Initials``,
  ``File As``, a photo's URL) are never kept.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from dataclasses import dataclass

# The ANSI code pages Windows software saves in; the first is the tie-breaker.
WINDOWS_CODE_PAGES = (
    "cp1252",
    "cp1250",
    "cp1251",
    "cp1253",
    "cp1254",
    "cp1255",
    "cp1256",
    "cp1257",
    "cp1258",
)
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_NAMES = {
    "utf_8": "UTF-8",
    "utf_8_sig": "UTF-8 with BOM",
    "utf_16": "UTF-16",
    "utf_16_le": "UTF-16",
    "utf_16_be": "UTF-16",
    "utf_32": "UTF-32",
    **{f"cp{n}": f"Windows-{n}" for n in range(1250, 1259)},
}

# Loose header (see ``contacts_csv.header_key``) -> the values every contact gets by default.
FILLER_VALUES: Mapping[str, frozenset[str]] = {
    "gender": frozenset({"unspecified"}),
    "private": frozenset({"false"}),
    "sensitivity": frozenset({"normal"}),
    "priority": frozenset({"normal"}),
    "birthday": frozenset({"0/0/00", "00/00/00"}),
    "anniversary": frozenset({"0/0/00", "00/00/00"}),
}
# Columns that only restate another column, never kept.
_RESTATED = re.compile(
    r"^(?:email\d*(?:type|displayname)|email\d+label|initials|fileas|photo)$",
)


@dataclass(frozen=True)
class DecodedText:
    """A file's text and the encoding it was read in, named as people know it."""

    text: str
    encoding: str


def decode_export(data: bytes, encoding: str = "") -> DecodedText:
    """The text of a contacts file, in ``encoding`` if given, else detected (module docstring).

    ValueError names an unknown encoding, or the line of the first byte ``encoding`` can't read,
    or (detecting) the code pages that read the file equally well but differently, each reading.
    """
    if encoding:
        return _decode_as(data, encoding)
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return _decode_as(data, codec)
    try:
        return DecodedText(data.decode("utf-8"), "UTF-8")
    except UnicodeDecodeError:
        pass
    if not _evidently_utf8(data):
        # 4 MiB of detector tables, for the rare file that is neither UTF-8 nor has a BOM.
        from charset_normalizer import from_bytes  # noqa: PLC0415

        matches = list(from_bytes(data, cp_isolation=list(WINDOWS_CODE_PAGES)))
        if matches:
            least = min(m.chaos for m in matches)
            tied = [m for m in matches if m.chaos <= least]
            if any("cp1252" in m.could_be_from_charset for m in tied):
                return DecodedText(data.decode("cp1252"), "Windows-1252")
            codec = _one_reading(data, [m.encoding for m in tied])
            return DecodedText(data.decode(codec), _display_name(codec))
    # UTF-8 with the bad bytes kept apart (surrogateescape), so each cell holding one is named.
    return DecodedText(data.decode("utf-8", errors="surrogateescape"), "UTF-8")


# A well-formed UTF-8 multi-byte sequence (RFC 3629: no overlong forms, no surrogates, at
# most U+10FFFF), else one byte that starts none.
_UTF8_SEQUENCE = re.compile(
    rb"(?P<sequence>[\xC2-\xDF][\x80-\xBF]"
    rb"|\xE0[\xA0-\xBF][\x80-\xBF]|[\xE1-\xEC\xEE\xEF][\x80-\xBF]{2}|\xED[\x80-\x9F][\x80-\xBF]"
    rb"|\xF0[\x90-\xBF][\x80-\xBF]{2}|[\xF1-\xF3][\x80-\xBF]{3}|\xF4[\x80-\x8F][\x80-\xBF]{2})"
    rb"|(?P<stray>[\x80-\xFF])"
)


def _evidently_utf8(data: bytes) -> bool:
    """True if ``data``, which isn't valid UTF-8, is UTF-8 text with a few stray bytes (see
    the module docstring): then no code page is guessed."""
    for line in data.split(b"\n"):
        if not line.isascii() and _is_utf8(line):
            return True
    sequences = strays = 0
    for found in _UTF8_SEQUENCE.finditer(data):
        if found.group("sequence"):
            sequences += 1
        else:
            strays += 1
    return sequences > strays


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _one_reading(data: bytes, codecs_: list[str]) -> str:
    """The one of ``codecs_`` (tied, none of them Windows-1252) to read ``data`` in: any, if
    they all read it the same; else ValueError shows each reading of the first line on which
    they differ, for the file's encoding to be given."""
    readings: dict[str, list[str]] = {}
    for codec in sorted(codecs_, key=_code_page_order):
        readings.setdefault(data.decode(codec), []).append(codec)
    if len(readings) == 1:
        return codecs_[0]
    lines = [text.split("\n") for text in readings]
    number = next((n for n, same in enumerate(zip(*lines, strict=False)) if len(set(same)) > 1), 0)
    shown = [
        f"{_differing_cell(text_lines[number])!r} in {' or '.join(map(_display_name, names))}"
        for text_lines, names in zip(lines, readings.values(), strict=True)
    ]
    example = codecs.lookup(next(iter(readings.values()))[0]).name.replace("cp", "windows-")
    raise ValueError(
        f"line {number + 1}: can't tell the file's encoding; it reads as "
        f"{', '.join(shown[:-1])} or {shown[-1]}; "
        f"give the one that reads right with --encoding NAME (e.g. --encoding {example})"
    )


def _code_page_order(codec: str) -> int:
    name = codecs.lookup(codec).name
    return WINDOWS_CODE_PAGES.index(name) if name in WINDOWS_CODE_PAGES else len(WINDOWS_CODE_PAGES)


def _differing_cell(line: str) -> str:
    """The first cell of ``line`` (however it is separated) that isn't ASCII, shortened."""
    cells = re.split(r"[,;\t\"]", line.strip())
    cell = next((c.strip() for c in cells if not c.isascii()), line.strip())
    return cell if len(cell) <= 40 else f"{cell[:39]}\u2026"


def _decode_as(data: bytes, encoding: str) -> DecodedText:
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise ValueError(
            f"unknown encoding {encoding!r} (e.g. utf-8, utf-16, windows-1252)"
        ) from None
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].decode(codec, errors="replace").count("\n") + 1
        byte = data[exc.start]
        raise ValueError(
            f"line {line}: byte 0x{byte:02X} can't be read as {_display_name(codec)}; "
            "give the file's encoding with --encoding (e.g. windows-1252)"
        ) from None
    return DecodedText(text.removeprefix("\ufeff"), _display_name(codec))


def _display_name(codec: str) -> str:
    name = codecs.lookup(codec).name.replace("-", "_")
    return _NAMES.get(name, codec)


def is_filler(key: str, value: str) -> bool:
    """True if a cell under loose header ``key`` says nothing about the contact (see above)."""
    if _RESTATED.match(key):
        return True
    defaults = FILLER_VALUES.get(key)
    return defaults is not None and value.casefold() in defaults
