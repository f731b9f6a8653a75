"""Speed and scale of `solve`: 50 tenants x 20 devices (median of many runs) and 2,000 tenants x
500 nodes under a time limit, with the quality reached against upper bounds, and peak memory.

    nice .venv/bin/python hack/bench/placement/speed.py medium --out hack/bench/placement
    nice .venv/bin/python hack/bench/placement/speed.py scale --out hack/bench/placement

Each scale run happens in a fresh process (`scale-one`) so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import instances
from bounds import pooled_lp_bound

from edgetenant.placement import solve
from edgetenant.placement.cpsat import solve_cpsat
from edgetenant.placement.greedy import shortlist, solve_greedy
from edgetenant.placement.problem import compile_problem, evaluate, upper_bound


def _spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"median": statistics.median(ordered), "p10": pick(0.1), "p90": pick(0.9), "max": ordered[-1]}


def medium(out: Path, runs: int) -> dict[str, object]:
    solve(instances.synthetic(tenants=5, nodes=4, seed=0), time_limit_s=0.5)  # load ortools first
    result: dict[str, object] = {}
    for load in (0.5, 1.0, 2.0):
        for limit in (0.1, 1.0):
            rows = []
            for seed in range(runs):
                snapshot = instances.synthetic(tenants=50, nodes=20, seed=seed, load=load, jetson_gpus=(1,))
                problem = compile_problem(snapshot)
                assert len(problem.devices) == 20
                plan = solve(snapshot, time_limit_s=limit)
                greedy = solve(snapshot, use_cpsat=False)
                lp = pooled_lp_bound(problem)
                best_bound = min(b for b in (plan.bound, lp, upper_bound(problem)) if b is not None)
                rows.append(
                    {
                        "seed": seed,
                        "solve_ms": plan.solve_ms,
                        "greedy_ms": greedy.solve_ms,
                        "solver": plan.solver,
                        "optimal": plan.optimal,
                        "objective": plan.objective,
                        "greedy_objective": greedy.objective,
                        "bound": best_bound,
                        "quality_vs_bound": plan.objective / best_bound,
                    }
                )
            key = f"load {load} limit {limit}s"
            result[key] = {
                "solve_ms": _spread([r["solve_ms"] for r in rows]),
                "greedy_ms": _spread([r["greedy_ms"] for r in rows]),
                "quality_vs_bound": _spread([r["quality_vs_bound"] for r in rows]),
                "cp_sat_gain_over_greedy": _spread([r["objective"] / r["greedy_objective"] for r in rows]),
                "proved_optimal": sum(1 for r in rows if r["optimal"]),
                "runs": len(rows),
                "solvers": sorted({r["solver"] for r in rows}),
            }
            print(key, json.dumps(result[key]), file=sys.stderr, flush=True)
    (out / "speed-medium.json").write_text(json.dumps(result, indent=1))
    return result


def scale_one(tenants: int, nodes: int, seed: int, limit: float) -> dict[str, object]:
    solve(instances.synthetic(tenants=5, nodes=4, seed=0), time_limit_s=0.5)  # load ortools first
    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    snapshot = instances.synthetic(tenants=tenants, nodes=nodes, seed=seed)
    started = time.perf_counter()
    plan = solve(snapshot, time_limit_s=limit)
    wall = time.perf_counter() - started
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    problem = compile_problem(snapshot)
    greedy = solve(snapshot, use_cpsat=False)
    lp = pooled_lp_bound(problem)
    return {
        "tenants": tenants,
        "nodes": nodes,
        "devices": len(problem.devices),
        "seed": seed,
        "limit_s": limit,
        "solve_ms": plan.solve_ms,
        "wall_s": wall,
        "solver": plan.solver,
        "objective": plan.objective,
        "greedy_objective": greedy.objective,
        "greedy_ms": greedy.solve_ms,
        "cp_sat_bound": plan.bound,
        "all_served_bound": upper_bound(problem),
        "pooled_lp_bound": lp,
        "quality_vs_lp_bound": plan.objective / lp,
        "placed": len(plan.placements),
        "unplaced": len(plan.unplaced),
        "peak_rss_mib": peak_rss / 1024,
        "rss_growth_mib": (peak_rss - baseline_rss) / 1024,
    }


def scale_long(seed: int, limit: float, workers: int) -> dict[str, object]:
    """What CP-SAT reaches and proves on the large instance given much longer: the program on a
    shortlist of 3 devices per tenant (the full one has ~800k options), warm-started by the greedy."""
    snapshot = instances.synthetic(tenants=2000, nodes=500, seed=seed)
    problem = compile_problem(snapshot)
    greedy = solve_greedy(problem)
    candidates = shortlist(problem, greedy, per_tenant=3)
    started = time.perf_counter()
    result = solve_cpsat(problem, time_limit_s=limit, hint=greedy, candidates=candidates, num_workers=workers)
    wall = time.perf_counter() - started
    assert result is not None
    return {
        "seed": seed,
        "limit_s": limit,
        "workers": workers,
        "wall_s": wall,
        "status": result.status,
        "options": sum(len(c) for c in candidates.values()),
        "greedy_objective": evaluate(problem, greedy),
        "cp_sat_objective": evaluate(problem, result.assignment),
        "cp_sat_bound_on_shortlist": result.bound,
        "pooled_lp_bound": pooled_lp_bound(problem),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("medium", "scale", "scale-one", "scale-long"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--limit", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.what == "medium":
        print(json.dumps(medium(args.out, args.runs), indent=1))
    elif args.what == "scale-long":
        found = scale_long(args.seed, args.limit, args.workers)
        (args.out / "speed-scale-long.json").write_text(json.dumps(found, indent=1))
        print(json.dumps(found, indent=1))
    elif args.what == "scale-one":
        print(json.dumps(scale_one(2000, 500, args.seed, args.limit)))
    else:
        rows = []
        for seed in range(args.runs):
            done = subprocess.run(
                [sys.executable, __file__, "scale-one", "--seed", str(seed), "--limit", str(args.limit)],
                check=True,
                capture_output=True,
                text=True,
            )
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        summary = {
            "runs": rows,
            "solve_ms": _spread([float(r["solve_ms"]) for r in rows]),
            "quality_vs_lp_bound": _spread([float(r["quality_vs_lp_bound"]) for r in rows]),
            "peak_rss_mib": _spread([float(r["peak_rss_mib"]) for r in rows]),
        }
        (args.out / "speed-scale.json").write_text(json.dumps(summary, indent=1))
        print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
