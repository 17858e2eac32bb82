"""Contact exports as address books write them: their text encodings and their filler columns.

Pure: bytes in, text out; a header and a cell in, whether the cell says anything.

Decisions:
- A byte-order mark decides (UTF-8, UTF-16 as Outlook's and Excel's "Unicode" files, UTF-32);
  else a file that is valid UTF-8 is UTF-8; else charset-normalizer chooses among the Windows
  code pages (the "ANSI" encodings Outlook and Excel save in), and Windows-1252 wins a tie:
  a few names read equally well in Windows-1250 or -1252 (Núñez or Núńez), and a practice's
  address book is most often in Windows-1252. The import names the encoding it read, and a
  Central European file that was read wrong is imported again with ``--encoding
  windows-1250``. A file none of them reads is read as UTF-8, and each cell with a byte that
  isn't is a problem naming its line and column. ``--encoding`` (or ``[import]
  encoding``) forces one encoding, and a byte it can't read is a problem naming its line.
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

from charset_normalizer import from_bytes

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

    ValueError names an unknown encoding, or the line of the first byte ``encoding`` can't read.
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
    matches = list(from_bytes(data, cp_isolation=list(WINDOWS_CODE_PAGES)))
    if matches:
        least = min(m.chaos for m in matches)
        tied = [m for m in matches if m.chaos <= least]
        western = any("cp1252" in m.could_be_from_charset for m in tied)
        codec = "cp1252" if western else tied[0].encoding
        return DecodedText(data.decode(codec), _display_name(codec))
    # Nothing reads it: UTF-8 with the bad bytes kept apart, so each cell holding one is named.
    return DecodedText(data.decode("utf-8", errors="surrogateescape"), "UTF-8")


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
