"""Baselines against the solver on the lab topology (hack/lab/edge-lab.yaml with the shipped
AcceleratorClasses) with a paper-like tenant mix (instances.lab_snapshot).

    nice .venv/bin/python hack/bench/placement/lab.py --out hack/bench/placement

Reports served throughput (sum of served req/s), the objective and unplaced tenants per
scenario, averaged over seeds, and draws lab-baselines.png.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import instances
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from edgetenant.placement import solve, solve_baseline
from edgetenant.placement.baselines import BASELINES

SCENARIOS = [(1, 0.5), (1, 1.0), (2, 1.0), (2, 2.0), (3, 1.0), (3, 2.0)]  # (tenants per model, load)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--time-limit", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    methods = ["solver", *BASELINES]
    table: dict[str, dict[str, dict[str, float]]] = {}
    for per_model, load in SCENARIOS:
        key = f"{6 * per_model} tenants, load x{load}"
        acc: dict[str, dict[str, list[float]]] = {
            m: {"served": [], "objective": [], "unplaced": []} for m in methods
        }
        demand: list[float] = []
        for seed in range(args.seeds):
            snapshot = instances.lab_snapshot(tenants_per_model=per_model, load=load, seed=seed)
            demand.append(sum(t.demand for t in snapshot.tenants))
            for m in methods:
                plan = (
                    solve(snapshot, time_limit_s=args.time_limit)
                    if m == "solver"
                    else solve_baseline(snapshot, m)
                )
                acc[m]["served"].append(sum(p.predicted_throughput for p in plan.placements))
                acc[m]["objective"].append(plan.objective)
                acc[m]["unplaced"].append(len(plan.unplaced))
        table[key] = {m: {k: statistics.fmean(v) for k, v in acc[m].items()} for m in methods}
        table[key]["demand"] = {"served": statistics.fmean(demand), "objective": 0.0, "unplaced": 0.0}
        print(key, json.dumps(table[key]), file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "lab.json").write_text(json.dumps(table, indent=1))

    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / (len(methods) + 1)
    for i, m in enumerate(["demand", *methods]):
        xs = [j + i * width for j in range(len(table))]
        ax.bar(
            xs,
            [table[k][m]["served"] for k in table],
            width,
            label=m,
            color="lightgrey" if m == "demand" else None,
            edgecolor="black" if m == "demand" else None,
        )
    ax.set_xticks([j + 0.4 for j in range(len(table))], list(table), rotation=15, fontsize=8)
    ax.set_ylabel("served req/s (model prediction)")
    ax.set_title("Lab topology: served throughput, solver vs baselines (mean of seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "lab-baselines.png", dpi=120)
    print(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
