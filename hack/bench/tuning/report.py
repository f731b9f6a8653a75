"""Markdown table from bench.py's results JSON: default vs loop vs brute force, per model.

Usage: .venv/bin/python hack/bench/tuning/report.py hack/bench/tuning/results.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def configuration(instances: int, batching: bool | None) -> str:
    return f"{instances}{' +batch' if batching else ''}"


def paired_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| model | interval | default (1) | loop (instances) | brute-force best (instances) | loop / best "
        "| best / default |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        p = r.get("paired")
        if not p:
            continue
        loop = r["loop"]
        lines.append(
            f"| {r['model']} | {r.get('interval_s', '-')} s | {p['default']:.1f} | {p['loop']:.1f} "
            f"({configuration(loop['final_instances'], loop.get('final_batching'))}) | {p['best']:.1f} "
            f"({configuration(r['best']['concurrency'], r['best'].get('batching'))}) | "
            f"{p['loop'] / p['best']:.0%} | {p['best'] / p['default']:.2f}x |"
        )
    return "\n".join(lines)


def table(results: list[dict[str, Any]], intervals: int) -> str:
    """``intervals``: the loop's ticks before the steady window (bench.py's --intervals)."""
    lines = [
        "| model | default (1 instance) | loop, steady | failed | brute-force best | loop / best "
        "| intervals to 95 % | last change | changes in the steady window | loop's choice "
        "| sweep (instances: req/s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        best = r["best"]
        sweep = ", ".join(
            f"{configuration(p['concurrency'], p.get('batching'))}: {p['throughput']:.1f}" for p in r["sweep"]
        )
        loop = r.get("loop")
        if loop is None:
            cells = ["-"] * 7
        else:
            ratio = loop["steady_throughput"] / best["throughput"] if best["throughput"] else 0.0
            changes = [d["interval"] for d in loop["decisions"] if d["action"] != "Hold"]
            cells = [
                f"{loop['steady_throughput']:.1f}",
                str(loop.get("steady_failed", "-")),
                f"{ratio:.0%}",
                str(loop["converged_at"]) if loop["converged_at"] is not None else "never",
                str(max(changes, default=0)),
                f"{sum(1 for i in changes if i > intervals)} of {len(loop['decisions']) - intervals} ticks",
                configuration(loop["final_instances"], loop.get("final_batching")),
            ]
        lines.append(
            f"| {r['model']} | {r['default']['throughput']:.1f} | {cells[0]} | {cells[1]} | "
            f"{best['throughput']:.1f} ({configuration(best['concurrency'], best.get('batching'))}) | "
            f"{cells[2]} | {cells[3]} | {cells[4]} | {cells[5]} | {cells[6]} | {sweep} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", type=Path, help="bench.py's results JSON")
    data = json.loads(parser.parse_args(argv).results.read_text())
    print(table(data["results"], int(data["args"]["intervals"])))
    if any(r.get("paired") for r in data["results"]):
        print()
        print(paired_table(data["results"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
