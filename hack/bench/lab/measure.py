"""The lab's warm start time and resident memory.

    .venv/bin/python hack/bench/lab/measure.py [--runs 3]

Takes the lab down, brings it up `--runs` times (binaries already built), and reports the time
`hack/lab/lab up` takes to ready and the resident memory (RSS) of every lab process once idle.
Cold build figures come from `/usr/bin/time -v hack/lab/build.sh` with an empty cache (see BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
LAB = [sys.executable, str(REPO / "hack" / "lab" / "lab.py")]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    times = []
    for _ in range(args.runs):
        subprocess.run([*LAB, "down"], check=True, capture_output=True)
        started = time.monotonic()
        subprocess.run([*LAB, "up"], check=True, capture_output=True)
        times.append(time.monotonic() - started)
    time.sleep(20)  # let start-up work settle before reading memory
    env = json.loads(
        subprocess.run([*LAB, "env", "--json"], check=True, capture_output=True, text=True).stdout
    )
    state = json.loads((Path(env["EDGETENANT_LAB_DIR"]) / "state.json").read_text())
    memory = {name: rss_mib(pid) for name, pid in state["pids"].items()}
    print(f"| warm `lab up` to ready (median, min-max of {args.runs}) | lab RSS, idle |")
    print("|---|---|")
    print(
        f"| {statistics.median(times):.1f} s ({min(times):.1f}-{max(times):.1f} s) | "
        f"{sum(memory.values()):.0f} MiB: "
        + ", ".join(f"{name} {mib:.0f}" for name, mib in sorted(memory.items(), key=lambda kv: -kv[1]))
        + " |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
