"""Does the CP-SAT stage earn its place? Instances where the greedy is provably suboptimal, and
what CP-SAT gains there, in how much time, with the operator's default settings.

    nice .venv/bin/python hack/bench/placement/cpsat_gain.py --out hack/bench/placement

Three families:
  traps      copies of two gadgets the greedy cannot leave (instances.traps): the optimum is known
             by construction and checked by exhaustive search on one copy of each gadget;
  synthetic  instances.synthetic clusters of 10-50 tenants: where CP-SAT finds a better plan the
             greedy is proved suboptimal by that plan;
  budget     the same synthetic clusters with a 20 s time limit (10x the default: CP-SAT on
             components of up to 5,000 options, 1 deterministic second): what the default leaves.
Timings are medians of interleaved rounds (every instance once per round), with the load average
recorded per round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import instances
from quality import exhaustive
from speed import spread

from edgetenant.placement import Snapshot, solve
from edgetenant.placement.problem import compile_problem

KNAPSACK_OPTIMUM, ASSIGNMENT_OPTIMUM, GREEDY_PER_COPY = 18_000.0, 19_000.0, 10_000.0


def check_gadgets() -> dict[str, float]:
    """The per-copy optimum of each gadget by exhaustive search (quality.exhaustive)."""
    knapsack, _ = exhaustive(compile_problem(instances.knapsack_trap(1)))
    assignment, _ = exhaustive(compile_problem(instances.assignment_trap(1)))
    assert (knapsack, assignment) == (KNAPSACK_OPTIMUM, ASSIGNMENT_OPTIMUM), (knapsack, assignment)
    greedy = solve(instances.traps(2), use_cpsat=False).objective
    assert greedy == 2 * GREEDY_PER_COPY, greedy
    return {"knapsack": knapsack, "assignment": assignment}


def run(snapshot: Snapshot, **options: Any) -> dict[str, Any]:
    plan = solve(snapshot, **options)
    assert plan.search is not None
    return {
        "objective": plan.objective,
        "greedy_objective": plan.search.greedy_objective,
        "optimal": plan.optimal,
        "solver": plan.solver,
        "solve_ms": plan.solve_ms,
        "cpsat_ms": plan.search.cpsat_wall_s * 1000,
        "cpsat_deterministic_s": plan.search.cpsat_deterministic_s,
        "cpsat_components": plan.search.cpsat_components,
        "components": plan.search.components,
        "deadline_hit": plan.search.deadline_hit,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    gadgets = check_gadgets()
    solve(instances.traps(2))  # OR-Tools imported before anything is timed

    cases: dict[str, tuple[Snapshot, dict[str, Any], float | None]] = {}
    for copies in (1, 10, 40, 200, 600, 1000):
        k, a = copies - copies // 2, copies // 2
        optimum = k * KNAPSACK_OPTIMUM + a * ASSIGNMENT_OPTIMUM
        cases[f"traps x{copies}"] = (instances.traps(copies), {}, optimum)
    for tenants in (10, 15, 20, 30, 50):
        for seed in range(args.seeds):
            snapshot = instances.synthetic(
                tenants=tenants, nodes=max(4, round(tenants * 0.4)), seed=seed, jetson_gpus=(1,)
            )
            cases[f"synthetic {tenants} s{seed}"] = (snapshot, {}, None)
            if tenants >= 30:
                budget = {"time_limit_s": 20.0}
                cases[f"budget {tenants} s{seed}"] = (snapshot, budget, None)

    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in cases}
    loads = []
    for r in range(args.rounds):
        loads.append(os.getloadavg()[0])
        order = list(cases) if r % 2 == 0 else list(reversed(cases))  # interleaved, both directions
        for name in order:
            snapshot, options, _ = cases[name]
            rows[name].append(run(snapshot, **options))
        print(f"round {r}: load {loads[-1]:.2f}", file=sys.stderr, flush=True)
    loads.append(os.getloadavg()[0])

    summary: dict[str, Any] = {}
    for name, runs in rows.items():
        snapshot, options, optimum = cases[name]
        first = runs[0]
        assert all(x["objective"] == first["objective"] for x in runs), f"{name}: plans differ between rounds"
        summary[name] = {
            "tenants": len(snapshot.tenants),
            "greedy_objective": first["greedy_objective"],
            "objective": first["objective"],
            "optimum": optimum,
            "gain": first["objective"] / first["greedy_objective"] - 1 if first["greedy_objective"] else 0.0,
            "optimal": first["optimal"],
            "solver": first["solver"],
            "components": first["components"],
            "cpsat_components": first["cpsat_components"],
            "cpsat_deterministic_s": first["cpsat_deterministic_s"],
            # Wall seconds per deterministic second on this machine (the safety net's margin).
            "wall_per_deterministic_s": statistics.median(x["cpsat_ms"] / 1000 for x in runs)
            / first["cpsat_deterministic_s"]
            if first["cpsat_deterministic_s"] > 0.01
            else None,
            "deadline_hit": any(x["deadline_hit"] for x in runs),
            "solve_ms": spread([x["solve_ms"] for x in runs]),
            "cpsat_ms": spread([x["cpsat_ms"] for x in runs]),
            "options": options,
        }
        row = summary[name]
        print(
            f"{name:22s} gain {row['gain']:+.2%} optimal {first['optimal']} "
            f"solve {row['solve_ms']['median']:.0f} ms (cp-sat {row['cpsat_ms']['median']:.0f})",
            file=sys.stderr,
        )
    result = {
        "gadget_optima": gadgets,
        "rounds": args.rounds,
        "load_average_1m": {"min": min(loads), "max": max(loads), "per_round": loads},
        "cpus": os.cpu_count(),
        "cases": summary,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cpsat-gain.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
