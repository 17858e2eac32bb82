"""The classification corpus (tests/corpus/manifest-*.toml): loading it and scoring a
classification against one entry. Shared by tests/test_corpus.py and
benchmarks/classify_corpus.py.

An expected value may be a list: any of its values is right (a source's own reading is
sometimes ambiguous). A misreading is *dangerous* when it could act irreversibly on a
relationship: a non-bounce read as a hard bounce, a non-opt-out read as an unsubscribe, or a
recipient's own rejection read as a policy block of the sender.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from outreach.domain.classify import Classification

CORPUS = Path(__file__).parent / "corpus"
RECIPIENT_LEVEL = ("user_unknown", "host_unknown", "rejected_by_recipient")


@dataclass(frozen=True)
class Entry:
    file: Path
    expected: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.file.relative_to(CORPUS))

    @property
    def language(self) -> str:
        return str(self.expected.get("language") or "-")

    @property
    def source(self) -> str:
        return str(self.expected.get("source") or "-")

    @property
    def kinds(self) -> list[str]:
        return _many(self.expected["kind"])

    @property
    def received(self) -> date:
        """A reception day after every message's Date (the classifier clamps a Date later
        than the day after reception; only a message without a Date reads it otherwise)."""
        return date(2027, 6, 30)


def entries() -> list[Entry]:
    found = []
    for manifest in sorted(CORPUS.glob("manifest-*.toml")):
        with manifest.open("rb") as handle:
            for table in tomllib.load(handle)["message"]:
                found.append(Entry(CORPUS / table["file"], table))
    return found


def _many(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def mismatches(entry: Entry, found: Classification) -> list[str]:
    """How ``found`` differs from the entry (empty: the manifest holds)."""
    expected = entry.expected
    wrong = []
    if found.kind not in entry.kinds:
        return [f"kind {found.kind} (expected {'/'.join(entry.kinds)})"]
    if found.kind == "bounce":
        if "bounce_class" in expected and found.bounce_class not in _many(expected["bounce_class"]):
            wrong.append(f"class {found.bounce_class} (expected {expected['bounce_class']})")
        if "reason" in expected and found.reason not in _many(expected["reason"]):
            wrong.append(f"reason {found.reason} (expected {expected['reason']})")
        if "recipient_count" in expected and len(found.failed) != expected["recipient_count"]:
            wrong.append(f"{len(found.failed)} recipients (expected {expected['recipient_count']})")
        if "recipients" in expected:
            got = sorted(f.address for f in found.failed)
            if got != sorted(a.lower() for a in expected["recipients"]):
                wrong.append(f"recipients {got} (expected {expected['recipients']})")
    elif "reason" in expected and found.reason != expected["reason"]:
        wrong.append(f"reason {found.reason} (expected {expected['reason']})")
    if "return_date" in expected and found.kind == "out_of_office":
        got_date = found.return_date.isoformat() if found.return_date else ""
        if got_date != expected["return_date"]:
            wrong.append(
                f"return date {got_date or 'none'} (expected {expected['return_date'] or 'none'})"
            )
    if expected.get("new_address") and found.new_address != expected["new_address"].lower():
        wrong.append(f"new address {found.new_address} (expected {expected['new_address']})")
    return wrong


def dangerous(entry: Entry, found: Classification) -> str | None:
    """Why this reading could hurt a relationship irreversibly, if it could."""
    expected = entry.expected
    if found.kind == "bounce" and found.bounce_class == "hard" and "bounce" not in entry.kinds:
        return "a non-bounce read as a hard bounce"
    if found.kind == "unsubscribe" and "unsubscribe" not in entry.kinds:
        return "a non-opt-out read as an unsubscribe"
    reasons = _many(expected.get("reason", []))
    classes = _many(expected.get("bounce_class", []))
    if (
        found.kind == "bounce"
        and found.bounce_class == "policy"
        and classes == ["hard"]
        and any(r in RECIPIENT_LEVEL for r in reasons)
    ):
        return "a recipient's own rejection read as a policy block"
    return None


__all__ = ["CORPUS", "Entry", "dangerous", "entries", "mismatches"]
