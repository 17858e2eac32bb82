"""When an absent person is back: the date an out-of-office text names as the end of the
absence or the return, in en, de, fr, es, it, nl, pt, pl or sv.

The words that introduce the date ("until", "bis", "jusqu'au", "hasta", "fino al", "tot en
met", "até", "back on", "from ... to ...") are ours; reading the date itself (month names in
every language, "Jan 4th", "04.01.2027", "4 de enero") is dateparser's. Numeric dates are read
in the order the message's language implies (month first only in US English); a date without
a year is the next such day on or after the message's Date. A date in the past or more than a
year ahead is a typo or a trap, and gives none.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

MAX_TEXT = 20_000  # characters searched
LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "pt", "pl", "sv")
_WINDOW = 60  # characters after an anchor that may hold the date

# Words after which an out-of-office text writes a date of its absence: its end ("until",
# "bis", "jusqu'au", "hasta", "fino al", "tot en met", "até"), the return ("back on",
# "zurück am", "de retour le", "regreso el", "rientro", "terug op", "retorno"), or a "from"
# that starts the time after it ("ab dem 1. März bin ich wieder erreichbar").
_ANCHORS = {
    "en": r"until|till|til|through|thru|to|return(?:s|ing)?|back|reopen(?:s|ing)?|"
    r"resum(?:e|es|ing)|after|starting",
    "de": r"bis|zurück|wieder|ab|rückkehr|kehre",
    "fr": r"jusqu['\u2019](?:au|à|a)|au|retour|reprise|à partir du|après",
    "es": r"hasta|al|regres(?:o|aré|are)|vuelta|volver[ée]|reincorpor(?:o|aré|are)|"
    r"a partir del?|después",
    "it": r"fino|al|rientr(?:o|erò|ero)|ritorno|torner[òo]|a partire dal|dopo",
    "nl": r"tot en met|t/m|tot|terug|weer|vanaf|na",
    "pt": r"até|ate|a|ao|retorno|regress(?:o|arei)|volta|voltarei|a partir de",
    "pl": r"do|wracam|powrót|powrotu|od",
    "sv": r"till|tillbaka|åter|t\.o\.m\.?|från|efter",
}
_ANCHOR = {
    language: re.compile(rf"(?<![\w/])(?:{words})(?![\w/])", re.IGNORECASE)
    for language, words in _ANCHORS.items()
}
_SENTENCE_END = re.compile(r"[!?;]|(?<!\d)[.](?=\s+[^\W\d])|\s[-\u2013\u2014]\s")
_ABBREVIATION_DOT = re.compile(r"\b([^\W\d_]{3,5})\.(?=\s*\d)")  # "Jan. 11"
# A numeric day and month without a year ("06.01.", "12/29"): dateparser needs the year.
_DAY_MONTH = re.compile(r"(?<![\d./])(\d{1,2})([./])(\d{1,2})(?:\2)?(?![\d]|[./]\d)")
_DAY_FIRST_ENGLISH = ("en-gb", "en-au", "en-nz", "en-ie", "en-za", "en-in")


def return_date(text: str, *, sent: date, language: str, content_language: str = "") -> date | None:
    """The return date ``text`` states, if any, read in ``language``: the latest date its
    absence words name (the end of an absence, or the return after it, comes after its
    start)."""
    flat = " ".join(text[:MAX_TEXT].split())
    anchors = _ANCHOR.get(language, _ANCHOR["en"])
    month_first = language == "en" and content_language.lower() not in _DAY_FIRST_ENGLISH
    found: list[date] = []
    for anchor in anchors.finditer(flat):
        window = flat[anchor.end() : anchor.end() + _WINDOW]
        end = _SENTENCE_END.search(window)
        window = window[: end.start()] if end else window
        if not re.search(r"\d", window):
            continue  # every date it could name has a day number
        day = _day_month(window, sent, month_first=month_first) or _parsed(
            window, sent, language, month_first=month_first
        )
        if day is not None and sent - timedelta(days=1) <= day <= sent + timedelta(days=366):
            found.append(day)
    return max(found, default=None)


def _day_month(window: str, sent: date, *, month_first: bool) -> date | None:
    """A numeric day and month with no year, as the next such day on or after ``sent``."""
    match = _DAY_MONTH.match(window.lstrip(" ,:"))
    if match is None:
        return None
    first, second = int(match.group(1)), int(match.group(3))
    month, day = (first, second) if month_first else (second, first)
    for year in (sent.year, sent.year + 1):
        try:
            when = date(year, month, day)
        except ValueError:
            return None
        if when >= sent - timedelta(days=1):
            return when
    return None


def _parsed(window: str, sent: date, language: str, *, month_first: bool) -> date | None:
    """The first date dateparser finds in ``window`` (month names in every language)."""
    from dateparser.search import search_dates  # noqa: PLC0415 (slow to load; rarely needed)

    settings = {
        "PREFER_DATES_FROM": "future",
        # The day before the message: "until December 18" sent on the 18th is that day.
        "RELATIVE_BASE": datetime.combine(sent - timedelta(days=1), datetime.min.time()),
        "DATE_ORDER": "MDY" if month_first else "DMY",
        "REQUIRE_PARTS": ["day", "month"],
        "RETURN_AS_TIMEZONE_AWARE": False,
    }
    languages = [language] if language == "en" else [language, "en"]
    try:
        found = search_dates(
            _ABBREVIATION_DOT.sub(r"\1", window), languages=languages, settings=settings
        )
    except Exception:  # a window dateparser can't read names no date
        return None
    if not found:
        return None
    when: date = found[0][1].date()
    return when


__all__ = ["LANGUAGES", "return_date"]
