"""When an absent person is back: the date an out-of-office text names as the end of the
absence, in en, de, fr, es, it, nl or pt.

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
LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "pt")
_WINDOW = 60  # characters after an anchor that may hold the date

# Words after which the end of an absence is written, per language.
_ANCHORS = {
    "en": r"until|till|til|through|thru|to|returning(?: to the office)?(?: on)?|"
    r"return(?:s|ing)? (?:to the office |to work )?on|back (?:in the office |at work |in "
    r"the practice )?(?:on|from)|will be back|back|return date(?: is)?:?|until and including",
    "de": r"bis (?:zum|einschließlich|inklusive|inkl\.|am)?|zurück (?:am|ab)|wieder (?:im büro |"
    r"erreichbar |da )?(?:am|ab)|ab dem|ab",
    "fr": r"jusqu'(?:au|à|a)|jusqu\u2019(?:au|à|a)|au|de retour (?:le|à partir du)?|retour (?:le|"
    r"prévu le)?|à partir du",
    "es": r"hasta (?:el)?|al|regreso (?:el)?|regresar[ée] (?:el)?|de vuelta (?:el)?|"
    r"volver[ée] (?:el)?|a partir del",
    "it": r"fino (?:al|a|all')|al|rientro (?:il|previsto (?:per )?il)?|rientrer[òo] (?:il)?|"
    r"di ritorno (?:il)?|torner[òo] (?:il)?|a partire dal",
    "nl": r"tot en met|t/m|tot|terug (?:op|vanaf)?|weer (?:aanwezig|bereikbaar|op kantoor) "
    r"(?:op|vanaf)|vanaf",
    "pt": r"at[ée] (?:o dia|dia|ao dia)?|a|retorno (?:em|no dia|dia)?|de volta (?:em|no dia|"
    r"dia)?|regresso (?:em|a)?|a partir de",
}
_ANCHOR = {
    language: re.compile(rf"(?<![\w/])(?:{words})(?![\w/])", re.IGNORECASE)
    for language, words in _ANCHORS.items()
}
_SENTENCE_END = re.compile(r"[!?;]|[.](?=\s+[^\W\d])|\s[-\u2013\u2014]\s")
_DAY_FIRST_ENGLISH = ("en-gb", "en-au", "en-nz", "en-ie", "en-za", "en-in")


def return_date(text: str, *, sent: date, language: str, content_language: str = "") -> date | None:
    """The return date ``text`` states, if any, read in ``language``."""
    from dateparser.search import search_dates  # noqa: PLC0415 (slow to load; rarely needed)

    flat = " ".join(text[:MAX_TEXT].split())
    anchors = _ANCHOR.get(language, _ANCHOR["en"])
    month_first = language == "en" and content_language.lower() not in _DAY_FIRST_ENGLISH
    order = "MDY" if month_first else "DMY"
    base = datetime.combine(sent - timedelta(days=1), datetime.min.time())
    settings = {
        "PREFER_DATES_FROM": "future",
        "RELATIVE_BASE": base,
        "DATE_ORDER": order,
        "REQUIRE_PARTS": ["day", "month"],
        "RETURN_AS_TIMEZONE_AWARE": False,
        "STRICT_PARSING": False,
    }
    languages = [language] if language == "en" else [language, "en"]
    for anchor in anchors.finditer(flat):
        window = flat[anchor.end() : anchor.end() + _WINDOW]
        end = _SENTENCE_END.search(window)
        window = window[: end.start()] if end else window
        if not re.search(r"\d", window):
            continue  # every date it could name has a day number
        try:
            found = search_dates(window, languages=languages, settings=settings)
        except Exception:  # noqa: S112 (a window dateparser can't read names no date)
            continue
        for _, when in found or ():
            day: date = when.date()
            if sent - timedelta(days=1) <= day <= sent + timedelta(days=366):
                return day
    return None


__all__ = ["LANGUAGES", "return_date"]
