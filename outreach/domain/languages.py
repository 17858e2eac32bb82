"""Which language a short message is written in, among those outreach reads (en, de, fr, es,
it, nl, pt, pl, sv): the ``Content-Language`` header when it names one, else the language whose
common words the text uses most. Enough to read a date in the right order; not a general
language detector.
"""

from __future__ import annotations

import re
from collections import Counter

_COMMON = {
    "en": "the and you your will be until back office with for please thank i am my out on",
    "de": "der die das und ich bin sie ihre nicht bis zum mit ist im von wieder büro bitte "
    "vielen dank ab",
    "fr": "le la les et je suis vous votre pas jusqu au du de des bureau merci avec pour "
    "retour absent",
    "es": "el la los las y yo estoy usted su hasta del de oficina gracias con para regreso "
    "fuera estaré",
    "it": "il lo la gli le e sono lei suo fino al dal ufficio grazie con per rientro fuori "
    "sarò non",
    "nl": "de het een en ik ben u uw niet tot met op kantoor bedankt voor terug afwezig vanaf",
    "pt": "o a os as e eu estou você seu até ao do de escritório obrigado com para retorno "
    "fora estarei não",
    "pl": "jestem i w do na nie się z od dzień dobry pozdrawiam urlopie sprawach proszę",
    "sv": "jag är och i på till den det inte med för hej tillbaka vänliga hälsningar ledig",
}
_WORDS = {language: frozenset(words.split()) for language, words in _COMMON.items()}
_TOKEN = re.compile(r"[^\W\d_]+", re.UNICODE)


def language_of(text: str, content_language: str = "") -> str:
    """The message's language code (``en`` when unsure)."""
    declared = content_language.split(",", 1)[0].strip().lower()[:2]
    if declared in _WORDS:
        return declared
    counts = Counter(token.lower() for token in _TOKEN.findall(text[:5000]))
    scores = {language: sum(counts[w] for w in words) for language, words in _WORDS.items()}
    best = max(scores, key=lambda language: (scores[language], language == "en"))
    return best if scores[best] > 0 else "en"


__all__ = ["language_of"]
