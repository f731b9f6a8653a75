"""What the comparison benchmarks share on a shared, noisy machine.

Every comparison is measured side by side in one run: each configuration once per round, the
rounds interleaved (ascending, then descending, so a slow minute falls on all configurations
alike), the median kept with its spread. A run starts only below a load average, records the
load at every point, and is not published when any configuration's spread is above
``MAX_SPREAD``: the results go to ``<name>.rejected.json`` and the script exits with
``EXIT_NOISY`` (``--force`` publishes it, marked noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

# (max - min) / median of one configuration's rounds. 15 % is about what a quiet hour of this
# 2-core VM gives for the same configuration; a neighbour's build shows as 30 % or more.
MAX_SPREAD = 0.15
MAX_LOAD = 1.0  # the 1-minute load average a run may start at
EXIT_NOISY = 4
EXIT_BUSY = 3
TICKS = os.sysconf("SC_CLK_TCK")

T = TypeVar("T")


def load1() -> float:
    return os.getloadavg()[0]


def cpu_s(pid: int) -> float | None:
    """utime + stime of a live process, in seconds; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine() -> dict[str, Any]:
    """What a result needs to say about the machine it was measured on."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": memory_kib / 2**20,
        "python": platform.python_version(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def wait_for_quiet(max_load: float, wait_s: float) -> float:
    """Wait up to ``wait_s`` for the 1-minute load to fall to ``max_load``; return the load seen."""
    deadline = time.monotonic() + wait_s
    while (load := load1()) > max_load and time.monotonic() < deadline:
        time.sleep(5)
    return load


def interleaved(configs: Sequence[T], rounds: int) -> Iterator[tuple[int, T]]:
    """(round, configuration): every configuration once per round, odd rounds in reverse."""
    for round_index in range(rounds):
        for config in configs if round_index % 2 == 0 else list(reversed(configs)):
            yield round_index, config


@dataclass(frozen=True, slots=True)
class Spread:
    median: float
    low: float
    high: float

    @property
    def relative(self) -> float:
        return (self.high - self.low) / self.median if self.median else 0.0

    def describe(self, digits: int = 1) -> str:
        return f"{self.median:.{digits}f} ({self.low:.{digits}f}–{self.high:.{digits}f})"


def spread(values: Sequence[float]) -> Spread:
    return Spread(statistics.median(values), min(values), max(values))


def too_noisy(spreads: dict[str, Spread], max_spread: float = MAX_SPREAD) -> list[str]:
    """The configurations whose rounds disagree by more than ``max_spread``, in words."""
    return [
        f"{name}: {s.describe()} spreads {s.relative:.0%}"
        for name, s in spreads.items()
        if s.relative > max_spread
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--max-spread, --max-load, --wait and --force, the same in every benchmark."""
    parser.add_argument("--max-spread", type=float, default=MAX_SPREAD)
    parser.add_argument("--max-load", type=float, default=MAX_LOAD)
    parser.add_argument("--wait", type=float, default=300.0, help="seconds to wait for the load to drop")
    parser.add_argument("--force", action="store_true", help="run whatever the load, publish however noisy")


def too_busy(args: argparse.Namespace) -> bool:
    """Wait for a quiet machine; True (and why, printed) when it never came and --force is not set."""
    load = wait_for_quiet(args.max_load, args.wait)
    if load > args.max_load and not args.force:
        print(f"load average {load:.2f} is above {args.max_load}: not measuring (--force to anyway)")
        return True
    return False


def reject(results: dict[str, Any], spreads: dict[str, Spread], args: argparse.Namespace, path: Path) -> bool:
    """Mark ``results`` with its spread; True when too noisy to publish (then written to ``path``)."""
    noisy = too_noisy(spreads, args.max_spread)
    results["max_spread"] = max(s.relative for s in spreads.values())
    results["noisy"], results["noisy_points"] = bool(noisy), noisy
    if noisy and not args.force:
        path.write_text(json.dumps(results, indent=2))
        print("not published, too noisy:\n  " + "\n  ".join(noisy) + f"\nraw figures: {path}")
        return True
    return False
