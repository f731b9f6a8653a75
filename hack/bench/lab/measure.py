"""The lab's warm start time and resident memory.

    .venv/bin/python hack/bench/lab/measure.py [--runs 3]

Takes the lab down, brings it up `--runs` times (binaries already built), and reports the time
`hack/lab/lab up` takes to ready, the 1-minute load average before each run, and the resident memory
(RSS) of every lab process once idle: the control plane's processes, and on the real node every
process in the node's cgroup subtree (the kubelet, containerd, the shims and the containers of the
lab's own pods, grouped by command name). Use a lab of its own (EDGETENANT_LAB_DIR,
EDGETENANT_LAB_PORT_OFFSET): the runs take it down and leave it up.
Cold build figures come from `/usr/bin/time -v hack/lab/build.sh` with an empty cache (see BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
LAB = [sys.executable, str(REPO / "hack" / "lab" / "lab.py")]
sys.path.insert(0, str(REPO / "hack" / "lab"))
import realnode  # noqa: E402 - the lab's own module, from its directory


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
    parser.add_argument("--node", default="kubelet", help="the lab's --node mode (kubelet or none)")
    args = parser.parse_args()
    times, loads = [], []
    for _ in range(args.runs):
        subprocess.run([*LAB, "down"], check=True, capture_output=True)
        loads.append(os.getloadavg()[0])
        started = time.monotonic()
        subprocess.run([*LAB, "up", f"--node={args.node}"], check=True, capture_output=True)
        times.append(time.monotonic() - started)
    time.sleep(20)  # let start-up work settle before reading memory
    env = json.loads(
        subprocess.run([*LAB, "env", "--json"], check=True, capture_output=True, text=True).stdout
    )
    lab_dir = Path(env["EDGETENANT_LAB_DIR"])
    state = json.loads((lab_dir / "state.json").read_text())
    node = realnode.Node(lab_dir=lab_dir, bin_dir=Path(state["bin_dir"]))
    on_node = realnode.node_pids(node)
    memory = {name: rss_mib(pid) for name, pid in state["pids"].items() if pid not in on_node}
    for pid in on_node:
        with contextlib.suppress(OSError):
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            memory[name] = memory.get(name, 0.0) + rss_mib(pid)
    print(
        f"| warm `lab up --node={args.node}` to ready (median, min-max of {args.runs}) "
        "| load (1 min) before each | lab RSS, idle |"
    )
    print("|---|---|---|")
    print(
        f"| {statistics.median(times):.1f} s ({min(times):.1f}-{max(times):.1f} s) | "
        + ", ".join(f"{load:.1f}" for load in loads)
        + " | "
        f"{sum(memory.values()):.0f} MiB: "
        + ", ".join(f"{name} {mib:.0f}" for name, mib in sorted(memory.items(), key=lambda kv: -kv[1]))
        + " |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
