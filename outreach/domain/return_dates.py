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
from functools import cache, cached_property
from typing import Any

MAX_TEXT = 20_000  # characters searched
LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "pt", "pl", "sv")
_WINDOW = 60  # characters after an anchor that may hold the date

# Words after which an out-of-office text writes a date of its absence: its end ("until",
# "bis", "jusqu'au", "hasta", "fino al", "tot en met", "até"), the return ("back on",
# "zurück am", "de retour le", "regreso el", "rientro", "terug op", "retorno"), or a "from"
# that starts the time after it ("ab dem 1. März bin ich wieder erreichbar").
_ANCHORS = {
    "en": r"until|till|til|through|thru|to|from|return(?:s|ing)?|back|reopen(?:s|ing)?|"
    r"resum(?:e|es|ing)|after|starting",
    "de": r"bis|zurück|wieder|ab|rückkehr|kehre",
    "fr": r"jusqu['\u2019](?:au|à|a)|au|retour|reprise|à partir du|après|reviens|rentre|"
    r"serai de retour",
    "es": r"hasta|al|regres(?:o|aré|are)|vuelta|vuelvo|volver[ée]|reincorpor(?:o|aré|are)|"
    r"a partir del?|después",
    "it": r"fino|al|rientr(?:o|erò|ero)|ritorno|torno|torner[òo]|a partire dal|dopo",
    "nl": r"tot en met|t/m|tot|terug|weer|vanaf|na",
    "pt": r"até|ate|a|ao|retorno|regress(?:o|arei)|volta|volto|voltarei|a partir de",
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
_DIGIT = re.compile(r"\d")
_DAY_FIRST_ENGLISH = ("en-gb", "en-au", "en-nz", "en-ie", "en-za", "en-in")


def return_date(text: str, *, sent: date, language: str, content_language: str = "") -> date | None:
    """The return date ``text`` states, if any, read in ``language``: the latest date its
    absence words name (the end of an absence, or the return after it, comes after its
    start)."""
    flat = " ".join(text[:MAX_TEXT].split())
    anchors = _ANCHOR.get(language, _ANCHOR["en"])
    month_first = language == "en" and content_language.lower() not in _DAY_FIRST_ENGLISH
    reader = _Reader(sent, language, month_first)
    found: list[date] = []
    for anchor in anchors.finditer(flat):
        window = flat[anchor.end() : anchor.end() + _WINDOW]
        end = _SENTENCE_END.search(window)
        window = window[: end.start()] if end else window
        day = _end_of_month(window, sent, language)
        if day is None and _DIGIT.search(window):
            day = _day_month(window, sent, month_first=month_first) or _parsed(window, reader)
        elif day is None:  # "until Monday": no day number
            day = _weekday(window, reader)
        if day is not None and sent - timedelta(days=1) <= day <= sent + timedelta(days=366):
            found.append(day)
    return max(found, default=None)


class _Reader:
    """dateparser's readings for one text. A reading takes a millisecond or two, and a text
    often names a date twice (its subject and its body) or tries a word twice: each string
    is read once."""

    def __init__(self, sent: date, language: str, month_first: bool) -> None:
        self.sent = sent
        self.language = language
        self._parser = _parser(language, month_first)
        self._dates: dict[str, Any] = {}
        self._weekdays: dict[str, date | None] = {}

    def date_data(self, candidate: str) -> Any:
        """dateparser's reading of ``candidate`` (see _parser); raises as it does."""
        if candidate not in self._dates:
            self._dates[candidate] = self._parser.get_date_data(candidate)
        return self._dates[candidate]

    def next_weekday(self, word: str) -> date | None:
        """The next ``word`` (a weekday's name in the language, dateparser's to know) within
        a week after the message was sent; None when it is no weekday."""
        if word not in self._weekdays:
            self._weekdays[word] = self._next_weekday(word)
        return self._weekdays[word]

    def _next_weekday(self, word: str) -> date | None:
        try:
            when = self._relative_parser.get_date_data(word).date_obj
        except Exception:
            return None
        if when is None:
            return None
        day: date = when.date()
        return day if self.sent < day <= self.sent + timedelta(days=7) else None

    @cached_property
    def _relative_parser(self) -> Any:
        """What ``dateparser.parse(word, languages=..., settings=...)`` reads with."""
        from dateparser.date import DateDataParser  # noqa: PLC0415 (slow to load; rarely needed)

        language = self.language
        return DateDataParser(
            languages=[language] if language == "en" else [language, "en"],
            settings={
                "PREFER_DATES_FROM": "future",
                "RELATIVE_BASE": datetime.combine(self.sent, datetime.min.time()),
            },
        )


def _day_month(window: str, sent: date, *, month_first: bool) -> date | None:
    """A numeric day and month with no year, as the next such day on or after ``sent``."""
    match = _DAY_MONTH.search(window)
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


def _parsed(window: str, reader: _Reader) -> date | None:
    """The first date in ``window`` that dateparser reads (month names in every language),
    trying the shapes a date is written in; without a year, the next such day."""
    window = _ABBREVIATION_DOT.sub(r"\1", window)
    window = _RANGE_END.sub(r"\1\2", window)  # "March 8-12" is March 12
    for shape in _SHAPES:
        found = shape.search(window)
        if found is None:
            continue
        try:
            data = reader.date_data(found.group(0))
        except Exception:  # noqa: S112 (a candidate dateparser can't read names no date)
            continue
        if data.date_obj is None:
            continue
        when: date = data.date_obj.date()
        if _YEAR.search(found.group(0)):
            return when
        return _next(when.month, when.day, reader.sent)
    return _weekday_and_day(window, reader) or _day_alone(window, reader.sent)


# "the end of February", "Ende Februar", "fin février", "fine febbraio", "eind februari".
_END_OF = re.compile(r"^\W*(?:the )?(?:end of|ende|fin(?: de)?|fine|eind|fim de|final de) (\w+)")
_FIRST_WORD = re.compile(r"^\W*(?:(?:on|am|le|el|il|op|o|next|this) )?([^\W\d_]{3,})\b")


def _end_of_month(window: str, sent: date, language: str) -> date | None:
    """The last day of the month named after "end of" (and its translations)."""
    found = _END_OF.match(window.lower())
    if found is None:
        return None
    try:
        data = _parser(language, False).get_date_data(f"1 {found.group(1)}")
    except Exception:
        return None
    if data.date_obj is None:
        return None
    first = _next(data.date_obj.month, 1, sent.replace(day=1))
    if first is None:
        return None
    after = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    return after - timedelta(days=1)


def _weekday(window: str, reader: _Reader) -> date | None:
    """A weekday alone ("until Monday", "bis Montag"): the next one after the message."""
    found = _FIRST_WORD.match(window.lower())
    return reader.next_weekday(found.group(1)) if found else None


def _weekday_and_day(window: str, reader: _Reader) -> date | None:
    """ "lunes 8", "Monday the 11th": the next date with that day of the month."""
    found = _WEEKDAY_DAY.search(window.lower())
    if found is None or reader.next_weekday(found.group(1)) is None:
        return None
    return _next_day_of_month(int(found.group(2)), reader.sent)


_WEEKDAY_DAY = re.compile(
    r"([^\W\d_]{3,}),?\s+(?:the\s+)?(\d{1,2})(?:st|nd|rd|th)?\b(?![:.,/-]?\d)"
)


def _day_alone(window: str, sent: date) -> date | None:
    """ "through the 19th": the next such day of a month."""
    found = _DAY_ALONE.match(window)
    if found is None:
        return None
    return _next_day_of_month(int(found.group(1)), sent)


def _next_day_of_month(day: int, sent: date) -> date | None:
    """The next date on or after the day before ``sent`` whose day of the month is ``day``:
    this month's or the next's."""
    for month_start in (sent.replace(day=1), (sent.replace(day=28) + timedelta(days=4))):
        try:
            when = month_start.replace(day=day)
        except ValueError:
            continue
        if when >= sent - timedelta(days=1):
            return when
    return None


# Tried last: "the 19th March" was read by the shapes above.
_DAY_ALONE = re.compile(r"\W*the (\d{1,2})(?:st|nd|rd|th)\b")
_RANGE_END = re.compile(r"(\b[^\W\d_]{3,}\.?\s+)\d{1,2}\s*[-\u2013]\s*(\d{1,2})\b(?![-./\u2013]\d)")


def _next(month: int, day: int, sent: date) -> date | None:
    """The next ``month``/``day`` on or after the day before ``sent``."""
    for year in range(sent.year, sent.year + 5):  # February 29 may be years away
        try:
            when = date(year, month, day)
        except ValueError:
            continue
        if when >= sent - timedelta(days=1):
            return when
    return None


@cache
def _parser(language: str, month_first: bool) -> Any:
    from dateparser.date import DateDataParser  # noqa: PLC0415 (slow to load; rarely needed)

    return DateDataParser(
        languages=[language] if language == "en" else [language, "en"],
        settings={
            "DATE_ORDER": "MDY" if month_first else "DMY",
            # A fixed base: the year of a date written without one is ours to choose.
            "RELATIVE_BASE": datetime(2000, 1, 1),
            "REQUIRE_PARTS": ["day", "month"],
            "RETURN_AS_TIMEZONE_AWARE": False,
        },
    )


# How a date is written, most specific first: numbers ("04.01.2027", "1/11"), a day and a
# month word ("8. Januar", "10 de janeiro", "4th of January 2027"), a month word and a day
# ("January 4, 2027", "Jan 4th"). Which words are months is dateparser's to know.
_SHAPES = (
    re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}"),
    re.compile(
        r"(?<!\d)\d{1,2}(?:st|nd|rd|th|er|e|º|ª)?\.?\s+(?:de\s+|of\s+)?[^\W\d_]{3,}\.?"
        r"(?:,?\s+(?:de\s+)?\d{4})?"
    ),
    re.compile(r"[^\W\d_]{3,}\.?\s+(?:the\s+)?\d{1,2}(?:st|nd|rd|th)?\b(?:,?\s+\d{4})?"),
)
_YEAR = re.compile(r"\d{4}|\d{1,2}[./-]\d{1,2}[./-]\d{2}")


__all__ = ["LANGUAGES", "return_date"]
