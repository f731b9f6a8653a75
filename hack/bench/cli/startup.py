"""How long `edgetenant <command> --help` takes, each command's runs interleaved with the others'.

    .venv/bin/python hack/bench/cli/startup.py [--runs 7]

Prints the median and range per command and the load average before and after (a figure taken while
other work runs is not a figure).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

EDGETENANT = Path(__file__).resolve().parents[3] / ".venv" / "bin" / "edgetenant"
COMMANDS = [["--version"], ["run", "--help"], ["plan", "--help"], ["zoo", "--help"], ["validate", "--help"]]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7, help="runs per command (default 7)")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    times: dict[str, list[float]] = {" ".join(c): [] for c in COMMANDS}
    for _ in range(args.runs):
        for command in COMMANDS:
            started = time.perf_counter()
            subprocess.run([str(EDGETENANT), *command], capture_output=True, check=True)
            times[" ".join(command)].append(time.perf_counter() - started)
    for name, values in times.items():
        print(f"{name:<16} median {statistics.median(values):.3f} s  ({min(values):.3f}-{max(values):.3f})")
    print(f"load average after:  {os.getloadavg()}")


if __name__ == "__main__":
    main()
