"""Secret values that must never reach output: the passwords the configuration loaded, which
every log formatter of ours masks. Process-wide, so the loader (low in the layers) can record
them and the log formatter (high) can hide them without either importing the other."""

from __future__ import annotations

from collections.abc import Iterable

MASK = "********"
_SECRETS: set[str] = set()
_CURRENT: dict[str, tuple[str, ...]] = {}  # secrets that change (access tokens), by kind


def hide(values: Iterable[str]) -> None:
    """Mask these values in every log line written from now on (shorter than 4: too common)."""
    _SECRETS.update(v for v in values if len(v) >= 4)


def hide_current(kind: str, values: Iterable[str]) -> None:
    """Mask these values of ``kind`` (tokens that are replaced every hour) instead of the ones
    given before: the set must not grow for a year."""
    _CURRENT[kind] = tuple(v for v in values if len(v) >= 4)


def masked(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every known secret (and ``extra``) replaced by the mask."""
    current = [v for values in tuple(_CURRENT.values()) for v in values]
    for secret in (*_SECRETS, *current, *extra):
        text = text.replace(secret, MASK)
    return text
