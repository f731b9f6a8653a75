"""Markdown table from bench.py's results JSON: default vs loop vs brute force, per model.

Usage: .venv/bin/python hack/bench/tuning/report.py hack/bench/tuning/results.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def paired_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| model | interval | default (1) | loop (count) | brute-force best (count) | loop / best "
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
            f"({loop['final_instances']}) | {p['best']:.1f} ({r['best']['concurrency']}) | "
            f"{p['loop'] / p['best']:.0%} | {p['best'] / p['default']:.2f}x |"
        )
    return "\n".join(lines)


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| model | default (1 instance) | loop | brute-force best | loop / best | intervals to 95 % "
        "| changes after | loop's count | sweep (instances: req/s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        best = r["best"]
        sweep = ", ".join(f"{p['concurrency']}: {p['throughput']:.1f}" for p in r["sweep"])
        loop = r.get("loop")
        if loop is None:
            cells = ["-"] * 5
        else:
            ratio = loop["steady_throughput"] / best["throughput"] if best["throughput"] else 0.0
            cells = [
                f"{loop['steady_throughput']:.1f}",
                f"{ratio:.0%}",
                str(loop["converged_at"]) if loop["converged_at"] is not None else "never",
                str(loop["changes_after"]),
                str(loop["final_instances"]),
            ]
        lines.append(
            f"| {r['model']} | {r['default']['throughput']:.1f} | {cells[0]} | "
            f"{best['throughput']:.1f} ({best['concurrency']}) | {cells[1]} | {cells[2]} | {cells[3]} | "
            f"{cells[4]} | {sweep} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    data = json.loads(Path(argv[0]).read_text())
    print(table(data["results"]))
    if any(r.get("paired") for r in data["results"]):
        print()
        print(paired_table(data["results"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
