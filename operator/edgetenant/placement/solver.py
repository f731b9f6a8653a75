"""`solve`: snapshot in, plan out. Greedy first (always available, and CP-SAT's warm start), then
CP-SAT within the time limit; the plan keeps whichever scores higher under `evaluate`.
Pure: no I/O. The clock is read only to report how long solving took, never to decide.

Determinism: CP-SAT runs with a fixed seed, and by default one worker, where its search is
deterministic; with the tie-break objective (cpsat.py) an optimum it proves is also unique up to
equal rank sums. More workers (`num_workers`) search faster but may return a different plan of
equal objective from run to run, and so can a run stopped by the time limit.
"""

from __future__ import annotations

import time

from edgetenant.placement.baselines import BASELINES
from edgetenant.placement.greedy import polish, shortlist, solve_greedy
from edgetenant.placement.plan import Plan, build_plan
from edgetenant.placement.problem import (
    DEFAULT_MOVE_COST,
    Assignment,
    Problem,
    compile_problem,
    evaluate,
    upper_bound,
)
from edgetenant.placement.snapshot import Snapshot

try:
    from edgetenant.placement.cpsat import CpSatResult, solve_cpsat

    CPSAT_AVAILABLE = True
except ImportError:  # NB: OR-Tools missing or broken on this platform: plans come from the greedy
    CPSAT_AVAILABLE = False

# Above this many (tenant, device, concurrency) options CP-SAT gets a shortlist of devices per tenant.
FULL_MODEL_OPTIONS = 20_000
SHORTLIST_DEVICES = 6
BUILD_OPTIONS_PER_SECOND = 10_000  # measured on a busy 2-core machine; conservative elsewhere
MIN_SEARCH_S = 0.05  # below this CP-SAT cannot even load the hint: keep the greedy plan


def _options(problem: Problem) -> int:
    return sum(
        (1 if tc.pinned else len(cc.devices)) * len(cc.levels) for tc in problem.tenants for cc in tc.classes
    )


def solve(
    snapshot: Snapshot,
    *,
    time_limit_s: float = 2.0,
    move_cost: float = DEFAULT_MOVE_COST,
    num_workers: int = 1,
    seed: int = 0,
    use_cpsat: bool = True,
    shortlist_devices: int = SHORTLIST_DEVICES,
) -> Plan:
    """Place every tenant it can; never raises for "does not fit" (the plan says why)."""
    started = time.perf_counter()
    problem = compile_problem(snapshot, move_cost=move_cost)
    greedy_started = time.perf_counter()
    greedy = solve_greedy(problem)
    # Polishing and building the plan afterwards cost about half a greedy run: keep that back.
    deadline = started + time_limit_s - 0.5 * (time.perf_counter() - greedy_started)
    best, name, optimal, bound = greedy, "greedy", False, None
    ceiling = upper_bound(problem)
    if evaluate(problem, greedy) >= ceiling - 1e-9 * max(1.0, abs(ceiling)):
        # Everyone served in full without avoidable moves: nothing can be better.
        optimal, bound = True, ceiling
    elif use_cpsat and CPSAT_AVAILABLE and problem.tenants:
        result, shortlisted = _improve(
            problem,
            greedy,
            deadline=deadline,
            shortlist_devices=shortlist_devices,
            num_workers=num_workers,
            seed=seed,
        )
        if result is not None:
            bound = min(result.bound, ceiling) if not shortlisted and result.bound is not None else ceiling
            if evaluate(problem, result.assignment) >= evaluate(problem, greedy) - 1e-9:
                best = result.assignment
                name = "cp-sat (shortlist)" if shortlisted else "cp-sat"
                optimal = result.optimal and not shortlisted
    return build_plan(
        problem,
        polish(problem, best),
        solver=name,
        solve_ms=(time.perf_counter() - started) * 1000.0,
        optimal=optimal,
        bound=bound,
    )


def _improve(
    problem: Problem,
    greedy: Assignment,
    *,
    deadline: float,
    shortlist_devices: int,
    num_workers: int,
    seed: int,
) -> tuple[CpSatResult | None, bool]:
    """CP-SAT warm-started from the greedy plan, if it fits before `deadline`; (result, shortlisted)."""
    # Building the program costs Python time that CP-SAT's own limit does not cover: keep it to
    # about half of what is left, shortlisting devices per tenant on large instances.
    affordable = max(deadline - time.perf_counter(), 0.0) / 2 * BUILD_OPTIONS_PER_SECOND
    options = _options(problem)
    class_count = max(1, sum(len(tc.classes) for tc in problem.tenants))
    levels = max(1, round(sum(len(cc.levels) for tc in problem.tenants for cc in tc.classes) / class_count))
    candidates = None
    modelled = options
    if options > min(FULL_MODEL_OPTIONS, affordable):
        per_tenant = min(shortlist_devices, int(affordable // max(1, len(problem.tenants) * levels)))
        if per_tenant < 1:
            return None, False
        candidates = shortlist(problem, greedy, per_tenant=per_tenant)
        modelled = sum(len(c) for c in candidates.values()) * levels
    search = deadline - time.perf_counter() - modelled / BUILD_OPTIONS_PER_SECOND
    if search < MIN_SEARCH_S:
        return None, candidates is not None
    result = solve_cpsat(
        problem,
        time_limit_s=search,
        hint=greedy,
        candidates=candidates,
        num_workers=num_workers,
        seed=seed,
    )
    return result, candidates is not None


def solve_baseline(snapshot: Snapshot, name: str, *, move_cost: float = DEFAULT_MOVE_COST) -> Plan:
    """Plan with one of the baselines (`BASELINES`), scored by the same objective."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    started = time.perf_counter()
    problem = compile_problem(snapshot, move_cost=move_cost)
    assignment = BASELINES[name](problem)
    return build_plan(problem, assignment, solver=name, solve_ms=(time.perf_counter() - started) * 1000.0)
