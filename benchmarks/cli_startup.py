"""Start-up time of the command line: ``outreach --help``, next to raw baselines from the same
run: the bare interpreter, the interpreter importing Typer (the CLI framework's own floor), and
Typer with Rich (which the command line loads only to print a table or a progress bar).
Median and best of N runs, each a fresh process, as a person would type it.

Usage: python benchmarks/cli_startup.py [RUNS]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def timed(command: list[str], runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    python = sys.executable
    cases = [
        ("baseline  python -c pass", [python, "-c", "pass"]),
        ("baseline  python -c 'import typer'", [python, "-c", "import typer"]),
        ("baseline  python -c 'import typer, rich'", [python, "-c", "import typer, rich.console"]),
        ("outreach --help", [python, "-m", "outreach", "--help"]),
        ("outreach contacts --help", [python, "-m", "outreach", "contacts", "--help"]),
        ("outreach --version", [python, "-m", "outreach", "--version"]),
    ]
    print(f"start-up time, median and best of {runs} fresh processes")
    for label, command in cases:
        median, best = timed(command, runs)
        print(f"  {label:42s} median {median * 1000:7.1f} ms   best {best * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
