"""What one re-plan costs the operator, at 50 x 20, 500 x 100 and 2,000 x 500 (tenants x nodes).

    nice .venv/bin/python hack/bench/placement/speed.py --rounds 7 --out hack/bench/placement

Per run exactly what the operator's planning pass does: `snapshot_from_objects` on the object
dicts (Nodes, AcceleratorClasses, InferenceTenants with status, ModelProfiles), then `solve` with
its default settings (Settings.solver_time_limit_s, Settings.move_cost). Two cases per size:
  first    a cluster where nothing is placed yet;
  re-plan  the cluster settled on the first plan (every tenant's activePlacement is its
           planned device) after one input changed (one tenant's demand +10%): what a watch
           event costs on a running cluster.
Sizes and cases are measured interleaved, in alternating order, `--rounds` times; the 1-minute
load average is recorded before each round. Wall time (what the operator waits) and process CPU
time (the work, all threads, much less sensitive to neighbours), medians with p10/p90. The guard:
when any row's spread, the interquartile range over the median, of CPU time (`--guard total_ms`:
of wall time) is above --max-spread (0.5), nothing is written (exit 3): the figures would not
mean anything. Plans must be identical
in every round (determinism).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import instances

from edgetenant.placement import CurrentPlacement, Snapshot, snapshot_from_objects, solve
from edgetenant.placement.objects import objects_from_snapshot
from edgetenant.settings import Settings

SIZES = ((50, 20), (500, 100), (2000, 500))


def spread(values: list[float]) -> dict[str, float]:
    """Median, p10/p90, and the spread the guard reads: the interquartile range over the median."""
    ordered = sorted(values)
    median = statistics.median(ordered)
    q1, _, q3 = statistics.quantiles(ordered, n=4) if len(ordered) > 1 else (median, median, median)
    p10, p90 = ordered[int(0.1 * (len(ordered) - 1))], ordered[round(0.9 * (len(ordered) - 1))]
    return {"median": median, "p10": p10, "p90": p90, "spread": (q3 - q1) / median if median else 0.0}


def settled(snapshot: Snapshot, settings: Settings) -> Snapshot:
    """The cluster once the first plan is carried out, then one tenant's demand +10%."""
    plan = solve(snapshot, time_limit_s=settings.solver_time_limit_s, move_cost=settings.move_cost)
    where = {p.tenant: CurrentPlacement(p.node, p.accelerator_class, p.device) for p in plan.placements}
    tenants = [replace(t, current=where.get(t.key)) for t in snapshot.tenants]
    tenants[0] = replace(tenants[0], demand=round(tenants[0].demand * 1.1, 1))
    return replace(snapshot, tenants=tuple(tenants))


def measure(objects: list[dict[str, Any]], settings: Settings) -> dict[str, Any]:
    cpu_started, started = time.process_time(), time.perf_counter()
    snapshot = snapshot_from_objects(objects)
    parsed = time.perf_counter()
    plan = solve(snapshot, time_limit_s=settings.solver_time_limit_s, move_cost=settings.move_cost)
    done, cpu_done = time.perf_counter(), time.process_time()
    assert plan.search is not None
    return {
        "parse_ms": (parsed - started) * 1000,
        "solve_ms": (done - parsed) * 1000,
        "total_ms": (done - started) * 1000,
        "cpu_ms": (cpu_done - cpu_started) * 1000,
        "objective": plan.objective,
        "placements": [
            (p.tenant, p.node, p.accelerator_class, p.device, p.concurrency) for p in plan.placements
        ],
        "placed": len(plan.placements),
        "moves": plan.moves,
        "solver": plan.solver,
        "optimal": plan.optimal,
        "cpsat_ms": plan.search.cpsat_wall_s * 1000,
        "components": plan.search.components,
        "cpsat_components": plan.search.cpsat_components,
        "deadline_hit": plan.search.deadline_hit,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--max-spread", type=float, default=0.5, help="refuse to publish above this")
    parser.add_argument(
        "--guard",
        choices=("cpu_ms", "total_ms"),
        default="cpu_ms",
        help="the spread the guard reads: CPU time (the work, robust to neighbours) or wall time",
    )
    parser.add_argument("--sizes", default=",".join(f"{t}x{n}" for t, n in SIZES))
    args = parser.parse_args()
    settings = Settings()
    sizes = [tuple(int(x) for x in size.split("x")) for size in args.sizes.split(",")]
    solve(instances.traps(2))  # OR-Tools imported (once per process in the operator too)

    cases: dict[str, list[dict[str, Any]]] = {}
    for tenants, nodes in sizes:
        snapshot = instances.synthetic(
            tenants=tenants, nodes=nodes, seed=0, jetson_gpus=(1,) if nodes <= 20 else (1, 2)
        )
        cases[f"{tenants}x{nodes} first"] = objects_from_snapshot(snapshot)
        cases[f"{tenants}x{nodes} re-plan"] = objects_from_snapshot(settled(snapshot, settings))
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in cases}
    loads = []
    for r in range(args.rounds):
        loads.append(os.getloadavg()[0])
        for name in list(cases) if r % 2 == 0 else list(reversed(cases)):
            rows[name].append(measure(cases[name], settings))
        print(f"round {r}: load {loads[-1]:.2f}", file=sys.stderr, flush=True)
    loads.append(os.getloadavg()[0])

    summary: dict[str, Any] = {}
    for name, runs in rows.items():
        first = runs[0]
        same = all(x["placements"] == first["placements"] for x in runs)
        summary[name] = {
            "devices_placed": first["placed"],
            "moves": first["moves"],
            "solver": first["solver"],
            "optimal": first["optimal"],
            "components": first["components"],
            "cpsat_components": first["cpsat_components"],
            "identical_plans": same,
            "deadline_hit": any(x["deadline_hit"] for x in runs),
            **{
                key: spread([x[key] for x in runs])
                for key in ("total_ms", "cpu_ms", "parse_ms", "solve_ms", "cpsat_ms")
            },
        }
        row = summary[name]
        total, cpu = row["total_ms"], row["cpu_ms"]
        print(
            f"{name:20s} wall {total['median']:7.1f} ms (p10 {total['p10']:.1f}, p90 {total['p90']:.1f}, "
            f"spread {total['spread']:.2f}) cpu {cpu['median']:7.1f} ms (spread {cpu['spread']:.2f}) "
            f"parse {row['parse_ms']['median']:.1f} solve {row['solve_ms']['median']:.1f} "
            f"[{first['solver']}, identical {same}]",
            file=sys.stderr,
        )
    result = {
        "settings": {"solver_time_limit_s": settings.solver_time_limit_s, "move_cost": settings.move_cost},
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "load_average_1m": {"min": min(loads), "max": max(loads), "per_round": loads},
        "max_spread": args.max_spread,
        "guard": args.guard,
        "cases": summary,
    }
    noisy = [name for name, row in summary.items() if row[args.guard]["spread"] > args.max_spread]
    if noisy or not all(row["identical_plans"] for row in summary.values()):
        print(f"refused: spread above {args.max_spread} or plans differ: {noisy}", file=sys.stderr)
        print(json.dumps(result, indent=1))
        return 3
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "replan.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "cases"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
