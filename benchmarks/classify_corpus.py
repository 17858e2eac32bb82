"""Classification accuracy and speed on the corpus (tests/corpus): accuracy per kind, per
language and per source, the confusion matrix of kinds, the misreadings (dangerous ones
first), and speed next to a bare ``email.message_from_bytes`` parse of the same bytes in the
same run: the median message's time, and the median of ROUNDS passes over the whole corpus
(after a warm-up).

Usage: python benchmarks/classify_corpus.py [ROUNDS] [--list]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import Counter, defaultdict
from datetime import date
from email import message_from_bytes
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from outreach.domain.classify import classify
from tests.corpus_manifest import dangerous, entries, mismatches


def rate(function: object, messages: list[bytes], rounds: int) -> tuple[float, float]:
    """Median and best messages per second over ``rounds`` passes."""
    assert callable(function)
    for raw in messages:  # warm-up: lazy imports, compiled patterns
        function(raw)
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for raw in messages:
            function(raw)
        rates.append(len(messages) / (time.perf_counter() - start))
    return statistics.median(rates), max(rates)


def per_message(function: object, messages: list[bytes], rounds: int) -> float:
    """The median over messages of each one's mean time across ``rounds`` runs."""
    assert callable(function)
    times = []
    for raw in messages:
        start = time.perf_counter()
        for _ in range(rounds):
            function(raw)
        times.append((time.perf_counter() - start) / rounds)
    return statistics.median(times)


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    rounds = int(args[0]) if args else 5
    corpus = entries()
    messages = [e.file.read_bytes() for e in corpus]
    received = date(2027, 6, 30)

    right: dict[str, Counter[bool]] = defaultdict(Counter)
    confusion: Counter[tuple[str, str]] = Counter()
    misread: list[str] = []
    harmful: list[str] = []
    for entry, raw in zip(corpus, messages, strict=True):
        found = classify(raw, received=received)
        wrong = mismatches(entry, found)
        ok = not wrong
        expected = entry.kinds[0] if found.kind not in entry.kinds else found.kind
        confusion[(expected, found.kind)] += 1
        for group in (
            f"kind {entry.kinds[0]}",
            f"language {entry.language}",
            f"source {entry.source}",
        ):
            right[group][ok] += 1
        right["all"][ok] += 1
        if wrong:
            misread.append(f"  {entry.name}: {'; '.join(wrong)}")
        why = dangerous(entry, found)
        if why:
            harmful.append(f"  {entry.name}: {why}")

    total = right["all"]
    print(
        f"corpus: {len(corpus)} messages; manifest holds for {total[True]} "
        f"({total[True] / len(corpus):.1%}); dangerous misreadings: {len(harmful)}"
    )
    for group in sorted(right):
        if group == "all":
            continue
        counts = right[group]
        n = counts[True] + counts[False]
        print(f"  {group:28s} {counts[True]:4d}/{n:<4d} {counts[True] / n:6.1%}")
    kinds = sorted({k for pair in confusion for k in pair})
    print("\nconfusion (rows: expected, columns: read as)")
    print(" " * 16 + "".join(f"{k[:12]:>13s}" for k in kinds))
    for expected in kinds:
        row = "".join(f"{confusion[(expected, got)] or '.':>13}" for got in kinds)
        print(f"{expected[:15]:16s}{row}")
    if harmful:
        print("\ndangerous misreadings:")
        print("\n".join(harmful))
    if "--list" in sys.argv:
        print("\nmisread:")
        print("\n".join(misread))

    def outreach(raw: bytes) -> object:
        return classify(raw, received=received)

    def bare(raw: bytes) -> object:
        return message_from_bytes(raw)

    print("\nspeed, per message: the median message's time (each timed over ROUNDS runs)")
    for label, function in (
        ("baseline  email.message_from_bytes", bare),
        ("outreach  classify", outreach),
    ):
        median = per_message(function, messages, rounds)
        print(f"  {label:36s} median {median * 1000:6.3f} ms = {1 / median:6.0f} msg/s")
    print(f"\nspeed, median and best of {rounds} passes over the corpus")
    for label, function in (
        ("baseline  email.message_from_bytes", bare),
        ("outreach  classify", outreach),
    ):
        median, best = rate(function, messages, rounds)
        print(f"  {label:36s} median {median:8.0f} msg/s   best {best:8.0f} msg/s")


if __name__ == "__main__":
    main()
