"""Quality: the solver against an exhaustive search on random small instances.

    nice .venv/bin/python hack/bench/placement/quality.py --instances 250 --out hack/bench/placement

The exhaustive search enumerates every tenant -> device map (or unplaced); for each device it
tries every concurrency combination of its tenants, scoring with the same sharing rule that
`evaluate` uses (problem.served_on_device); the optimum is then re-scored with `evaluate` itself.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from functools import cache
from pathlib import Path
from typing import Any

import instances

from edgetenant.placement import solve
from edgetenant.placement.baselines import BASELINES
from edgetenant.placement.problem import (
    Choice,
    DeviceRef,
    Problem,
    TenantCandidates,
    compile_problem,
    evaluate,
    served_on_device,
)


def exhaustive(problem: Problem) -> tuple[float, dict[str, Choice]]:
    tenants = problem.tenants
    choices: list[list[int | None]] = []  # per tenant: device indices it may use, or None
    for tc in tenants:
        devices = sorted({d for _, d, _ in tc.options()})
        choices.append([None, *devices])

    @cache
    def device_best(d: int, members: tuple[int, ...]) -> tuple[float, tuple[int, ...]] | None:
        """Best sum priority*served on device d for these tenants over their concurrency levels."""
        device = problem.devices[d]
        if len(members) > device.slots:
            return None
        level_lists = []
        for t in members:
            cls = device.ref.accelerator_class
            level_lists.append(list(tenants[t].levels_by_class[cls].values()))
        best: tuple[float, tuple[int, ...]] | None = None
        for combo in itertools.product(*level_lists):
            if sum(lv.memory_mib for lv in combo) > device.memory_mib + 1e-9:
                continue
            served = served_on_device(
                [(tenants[t].tenant.demand, lv.throughput) for t, lv in zip(members, combo, strict=True)]
            )
            value = sum(tenants[t].tenant.priority * s for t, s in zip(members, served, strict=True))
            if best is None or value > best[0] + 1e-12:
                best = (value, tuple(lv.concurrency for lv in combo))
        return best

    best_value, best_map = -float("inf"), None
    for mapping in itertools.product(*choices):
        on: dict[int, list[int]] = {}
        for t, d in enumerate(mapping):
            if d is not None:
                on.setdefault(d, []).append(t)
        value = 0.0
        feasible = True
        for d, members in on.items():
            found = device_best(d, tuple(members))
            if found is None:
                feasible = False
                break
            value += found[0]
        if not feasible:
            continue
        for t, tc in enumerate(tenants):
            if tc.tenant.current is not None and (
                mapping[t] is None or problem.devices[mapping[t]].ref != _current_ref(tc)
            ):
                value -= problem.move_cost
        if value > best_value + 1e-9:
            best_value, best_map = value, mapping
    assert best_map is not None
    assignment: dict[str, Choice] = {}
    on = {}
    for t, d in enumerate(best_map):
        if d is not None:
            on.setdefault(d, []).append(t)
    for d, members in on.items():
        found = device_best(d, tuple(members))
        assert found is not None
        for t, c in zip(members, found[1], strict=True):
            assignment[tenants[t].tenant.key] = Choice(problem.devices[d].ref, c)
    exact = evaluate(problem, assignment)
    assert abs(exact - best_value) < 1e-6 * max(1.0, abs(exact)), (exact, best_value)
    return exact, assignment


def _current_ref(tc: TenantCandidates) -> DeviceRef | None:
    cur = tc.tenant.current
    return None if cur is None else DeviceRef(cur.node, cur.accelerator_class, cur.device)


def _quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values) or [0.0]
    return {
        "median": statistics.median(ordered),
        "p90": ordered[round(0.9 * (len(ordered) - 1))],
        "max": ordered[-1],
    }


def ratio(value: float, optimum: float) -> float:
    """value / optimum, on objectives shifted so that 'place nothing' scores 0 (moves can make
    raw objectives negative)."""
    return 1.0 if abs(optimum) < 1e-9 else value / optimum


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib  # noqa: PLC0415 - only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    methods = {"solver": [r["ratio"] for r in rows], "greedy alone": [r["greedy_ratio"] for r in rows]}
    for name in BASELINES:
        methods[name] = [r["baselines"][name] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.boxplot(list(methods.values()), tick_labels=list(methods), whis=(0, 100))
    ax.axhline(0.97, color="red", linestyle=":", linewidth=1, label="97% (worst-case target)")
    ax.set_ylabel("objective / exhaustive optimum")
    ax.set_title(f"Quality on {len(rows)} random small instances (whiskers: min-max)")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=250)
    parser.add_argument("--time-limit", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    rows = []
    solve(instances.traps(2))  # OR-Tools imported before anything is timed
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    for seed in range(args.instances):
        snapshot = instances.random_small(seed)
        problem = compile_problem(snapshot)
        optimum, _ = exhaustive(problem)
        nothing = evaluate(problem, {})  # every current tenant taken off: the floor
        plan = solve(snapshot, time_limit_s=args.time_limit)
        greedy = solve(snapshot, use_cpsat=False)
        base = {name: evaluate(problem, fn(problem)) for name, fn in BASELINES.items()}
        span = optimum - nothing
        rows.append(
            {
                "seed": seed,
                "tenants": len(snapshot.tenants),
                "has_current": any(t.current is not None for t in snapshot.tenants),
                "devices": len(problem.devices),
                "optimum": optimum,
                "solver": plan.objective,
                "solver_name": plan.solver,
                "cp_sat_optimal": plan.optimal and plan.solver == "cp-sat",
                "bound": plan.bound,
                "solve_ms": plan.solve_ms,
                "cpsat_ms": plan.search.cpsat_wall_s * 1000 if plan.search else 0.0,
                "ratio": ratio(plan.objective - nothing, span),
                "raw_ratio": plan.objective / optimum if optimum else 1.0,
                "greedy": greedy.objective,
                "greedy_ratio": ratio(greedy.objective - nothing, span),
                "saturated": any(d.utilisation > 1 for d in plan.devices),
                "baselines": {k: ratio(v - nothing, span) for k, v in base.items()},
                "beats_best_baseline": plan.objective >= max(base.values()) - 1e-6,
            }
        )
        print(
            f"{seed}: ratio {rows[-1]['ratio']:.4f} ({plan.solver}, {plan.solve_ms:.0f} ms)", file=sys.stderr
        )
    ratios = [r["ratio"] for r in rows]
    summary = {
        "instances": len(rows),
        "mean_ratio": statistics.fmean(ratios),
        "worst_ratio": min(ratios),
        "optimal_share": sum(1 for r in ratios if r >= 1 - 1e-9) / len(ratios),
        "raw_mean_ratio": statistics.fmean(r["raw_ratio"] for r in rows),
        "raw_worst_ratio": min(r["raw_ratio"] for r in rows),
        # Where the greedy is provably suboptimal (below the exhaustive optimum) and the solver is not.
        "greedy_suboptimal": sum(1 for r in rows if r["greedy_ratio"] < 1 - 1e-9),
        "greedy_suboptimal_solved": sum(
            1 for r in rows if r["greedy_ratio"] < 1 - 1e-9 and r["ratio"] >= 1 - 1e-9
        ),
        "greedy_suboptimal_gain_median": statistics.median(
            [r["solver"] / r["greedy"] - 1 for r in rows if r["greedy_ratio"] < 1 - 1e-9 and r["greedy"] > 0]
            or [0.0]
        ),
        "greedy_suboptimal_solve_ms": _quantiles(
            [r["solve_ms"] for r in rows if r["greedy_ratio"] < 1 - 1e-9]
        ),
        "greedy_mean_ratio": statistics.fmean(r["greedy_ratio"] for r in rows),
        "greedy_worst_ratio": min(r["greedy_ratio"] for r in rows),
        "instances_with_a_saturated_device": sum(1 for r in rows if r["saturated"]),
        "instances_with_current_placements": sum(1 for r in rows if r["has_current"]),
        "tenants_histogram": {n: sum(1 for r in rows if r["tenants"] == n) for n in range(1, 7)},
        # How far CP-SAT's own (integer-scaled) optimum is from the exact objective of its plan.
        "cp_sat_scaling_gap_max": max(
            (
                abs(r["bound"] - r["solver"]) / abs(r["solver"])
                for r in rows
                if r["cp_sat_optimal"] and r["solver"]
            ),
            default=0.0,
        ),
        "never_below_best_baseline": all(r["beats_best_baseline"] for r in rows),
        "baseline_mean_ratio": {k: statistics.fmean(r["baselines"][k] for r in rows) for k in BASELINES},
        "solve_ms": _quantiles([r["solve_ms"] for r in rows]),
        "wall_s": time.perf_counter() - started,
        "load_average_1m": [load_before, os.getloadavg()[0]],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    plot(rows, args.out / "quality.png")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
