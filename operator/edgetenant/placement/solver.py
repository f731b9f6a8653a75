"""`solve`: snapshot in, plan out. Greedy first (always available, and CP-SAT's warm start), then
CP-SAT on the independent parts of the problem that are small enough for it; the plan keeps
whatever scores higher under `evaluate`. Pure: no I/O.

Determinism: no decision reads the clock. Which parts CP-SAT searches follows from option counts,
and how long it searches from its deterministic time (a count of work, the same on every machine),
a share of `time_limit_s`. The wall clock only measures `solve_ms` and, as a safety net, stops
CP-SAT's search `time_limit_s` after it began; a plan cut short by it says so in a warning (it
may differ between runs). CP-SAT runs with a fixed seed and one worker, where its search is
deterministic; more workers (`num_workers`) search faster but may return a different plan of
equal objective.

Failures: compiling isolates each tenant (problem.compile_problem); a CP-SAT failure leaves the
greedy plan standing, with a warning; any other unexpected error is traced to the tenants that
cause it, which are left out as planning errors while the others are planned (`_isolate`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

from edgetenant.placement.baselines import BASELINES
from edgetenant.placement.greedy import polish, solve_greedy
from edgetenant.placement.plan import Plan, SearchStats, Unplaced, UnplacedKind, build_plan
from edgetenant.placement.problem import (
    DEFAULT_MOVE_COST,
    Assignment,
    Choice,
    Problem,
    compile_problem,
    evaluate,
    moved,
    planning_error,
    served,
    upper_bound,
    violations,
)
from edgetenant.placement.snapshot import PlanWarning, Snapshot

# CP-SAT's budget: its deterministic time (about seconds on a quiet modern core) is this share of
# `time_limit_s`, so the wall-clock limit stays a safety net well above the search: on this
# project's busy 2-core VM one deterministic second took up to ~9 wall seconds, and an edge
# board running the operator may be slower still.
DETERMINISTIC_SHARE = 0.05
# A component with more (tenant, device, concurrency) options than this many per second of
# `time_limit_s` keeps its greedy plan (500 at the default 2 s): above it CP-SAT did not improve
# the greedy within its budget (none of 5 synthetic 30-tenant clusters, ~600 options), while
# building and searching the program still costs the operator's re-plan. A 50-tenant x
# 20-device cluster has about 1,800 options in all. Small components are searched together, in
# programs of up to this size. A larger time limit buys both a larger budget and larger programs.
CPSAT_OPTIONS_PER_SECOND = 250
# On a running cluster the greedy starts from the current placements (better and faster on the
# 500- and 2,000-tenant clusters measured); up to this many tenants, where it costs little, a
# greedy from scratch is tried too and the better kept.
FRESH_GREEDY_TENANTS = 200
# All programs of one solve together, in multiples of the largest: bounds the Python time spent
# building them (about 0.1 ms per option).
CPSAT_TOTAL_PROGRAMS = 3


def _import_cpsat() -> bool:
    """Load OR-Tools' CP-SAT library (only when CP-SAT runs; `sat` keeps pandas out); False when
    it cannot be imported on this platform (plans come from the greedy)."""
    try:
        import edgetenant.placement.cpsat  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Component:
    """Tenants that compete for devices, directly or through others, and those devices: no plan
    of one component changes the value of another's."""

    tenants: tuple[int, ...]  # indices into Problem.tenants, ascending
    options: int  # (tenant, device, concurrency) options of its tenants


def options_of(problem: Problem, t: int) -> int:
    tc = problem.tenants[t]
    return sum((1 if tc.pinned else len(cc.devices)) * len(cc.levels) for cc in tc.classes)


def components(problem: Problem) -> list[Component]:
    """The independent parts of the problem, ordered by their first tenant (tenants without any
    option are in none). Union-find over tenants and devices; a class's device list is shared by
    the tenants that see the same nodes, so each list is joined once."""
    tenants = len(problem.tenants)
    parent = list(range(tenants + len(problem.devices)))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: int, b: int) -> None:
        a, b = root(a), root(b)
        if a != b:
            parent[max(a, b)] = min(a, b)

    joined: set[int] = set()
    for t, tc in enumerate(problem.tenants):
        if tc.pinned and tc.current is not None:
            union(t, tenants + tc.current)
            continue
        for cc in tc.classes:
            if id(cc.devices) not in joined:
                joined.add(id(cc.devices))
                for d in cc.devices[1:]:
                    union(tenants + cc.devices[0], tenants + d)
            union(t, tenants + cc.devices[0])
    members: dict[int, list[int]] = {}
    for t, tc in enumerate(problem.tenants):
        if tc.classes:
            members.setdefault(root(t), []).append(t)
    return [
        Component(tuple(ts), sum(options_of(problem, t) for t in ts))
        for _, ts in sorted(members.items(), key=lambda item: item[1][0])
    ]


def tenant_values(problem: Problem, assignment: Assignment) -> list[float]:
    """Each tenant's part of the objective: priority x served, minus the move cost if it moved.
    Their sum over a component is that component's part of the objective."""
    values = [0.0] * len(problem.tenants)
    for key, s in served(problem, assignment).items():
        t = problem.tenant_index[key]
        values[t] = problem.tenants[t].tenant.priority * s
    for key in moved(problem, assignment):
        values[problem.tenant_index[key]] -= problem.move_cost
    return values


def _part_bound(problem: Problem, tenants: Sequence[int]) -> float:
    """All served in full, only the moves that cannot be avoided (problem.upper_bound, restricted)."""
    value = 0.0
    for t in tenants:
        tc = problem.tenants[t]
        value += tc.tenant.priority * tc.tenant.demand
        if tc.tenant.current is not None and not any(tc.current in cc.devices for cc in tc.classes):
            value -= problem.move_cost
    return value


def _close(value: float, bound: float) -> bool:
    return value >= bound - 1e-9 * max(1.0, abs(bound))


def solve(
    snapshot: Snapshot,
    *,
    time_limit_s: float = 2.0,
    move_cost: float = DEFAULT_MOVE_COST,
    num_workers: int = 1,
    seed: int = 0,
    use_cpsat: bool = True,
    cpsat_max_options: int | None = None,
) -> Plan:
    """Place every tenant it can. Never raises: "does not fit" is a reason in the plan, and an
    unexpected error costs only the tenants it comes from (Unplaced.kind PlanningError)."""
    started = time.perf_counter()
    problem = compile_problem(snapshot, move_cost=move_cost)
    settings = _Search(
        deadline=started + time_limit_s,  # reset when the search starts
        deterministic_s=DETERMINISTIC_SHARE * time_limit_s,
        time_limit_s=time_limit_s,
        use_cpsat=use_cpsat,
        cpsat_max_options=(
            round(CPSAT_OPTIONS_PER_SECOND * time_limit_s) if cpsat_max_options is None else cpsat_max_options
        ),
        num_workers=num_workers,
        seed=seed,
    )
    try:
        return _solve(problem, settings, started)
    except Exception as exc:  # a bug must cost the tenants it comes from, not everyone
        return _isolate(problem, settings, started, exc)


@dataclass(frozen=True, slots=True)
class _Search:
    deadline: float  # perf_counter() value: the wall-clock safety net on CP-SAT's search
    deterministic_s: float  # CP-SAT's deterministic-time budget for the whole solve
    time_limit_s: float
    use_cpsat: bool
    cpsat_max_options: int
    num_workers: int
    seed: int


def _solve(problem: Problem, settings: _Search, started: float) -> Plan:
    greedy = _greedy(problem)
    greedy_value = evaluate(problem, greedy)
    parts = components(problem)
    values = tenant_values(problem, greedy)
    # A component whose greedy plan serves everyone in full without avoidable moves is optimal.
    open_parts = [
        c for c in parts if not _close(sum(values[t] for t in c.tenants), _part_bound(problem, c.tenants))
    ]
    stats = SearchStats(
        greedy_objective=greedy_value, components=len(parts), proved_by_bound=len(parts) - len(open_parts)
    )
    warnings: list[PlanWarning] = []
    best: dict[str, Choice] = dict(greedy)
    bound = upper_bound(problem)
    proved = stats.proved_by_bound
    name = "greedy"
    if settings.use_cpsat and open_parts:
        batches = _batches(open_parts, settings.cpsat_max_options)
        available = bool(batches) and _import_cpsat()
        if batches and not available:
            warnings.append(PlanWarning("OR-Tools cannot be imported here: the plan is the greedy's alone"))
        if available:
            # The safety net covers the search, from its start: compiling and the greedy are
            # bounded by the instance's size, and OR-Tools' one-off import is no search.
            settings = dataclasses.replace(settings, deadline=time.perf_counter() + settings.time_limit_s)
            best, stats, bound, proved, name = _improve(
                problem,
                batches=batches,
                best=best,
                settings=settings,
                stats=stats,
                bound=bound,
                proved=proved,
                warnings=warnings,
            )
    if stats.deadline_hit:
        warnings.append(
            PlanWarning(
                f"the wall-clock limit of {settings.time_limit_s:g} s cut CP-SAT's search short "
                "(a slow or busy machine): this plan may differ from one made elsewhere"
            )
        )
    polished = polish(problem, best)
    return build_plan(
        problem,
        polished,
        solver=name,
        solve_ms=(time.perf_counter() - started) * 1000.0,
        optimal=proved == len(parts),
        bound=bound,
        warnings=tuple(warnings),
        search=stats,
    )


def _greedy(problem: Problem) -> dict[str, Choice]:
    """The greedy plan. On a running cluster (tenants with current placements) the greedy that
    starts from where they are, compared (up to FRESH_GREEDY_TENANTS tenants) with one from
    scratch; the better stands, the incumbent on a tie."""
    if not any(tc.current is not None for tc in problem.tenants):
        return solve_greedy(problem)
    seeded = solve_greedy(problem, incumbent=True)
    if len(problem.tenants) > FRESH_GREEDY_TENANTS:
        return seeded
    fresh = solve_greedy(problem)
    return fresh if evaluate(problem, fresh) > evaluate(problem, seeded) + 1e-9 else seeded


def _batches(parts: Sequence[Component], max_options: int) -> list[list[Component]]:
    """Components CP-SAT searches, packed in order into programs of at most `max_options`
    options, and no more than CPSAT_TOTAL_PROGRAMS x `max_options` in all; larger components
    keep the greedy plan."""
    batches: list[list[Component]] = []
    size = total = 0
    for part in parts:
        if part.options > max_options or total + part.options > CPSAT_TOTAL_PROGRAMS * max_options:
            continue
        if not batches or size + part.options > max_options:
            batches.append([])
            size = 0
        batches[-1].append(part)
        size += part.options
        total += part.options
    return batches


def _improve(
    problem: Problem,
    *,
    batches: list[list[Component]],
    best: dict[str, Choice],
    settings: _Search,
    stats: SearchStats,
    bound: float,
    proved: int,
    warnings: list[PlanWarning],
) -> tuple[dict[str, Choice], SearchStats, float, int, str]:
    """CP-SAT on each batch, warm-started from the current plan; each batch gets the share of the
    remaining deterministic budget that its options are of the remaining options."""
    from edgetenant.placement.cpsat import solve_cpsat  # noqa: PLC0415 - OR-Tools only when needed

    name = "greedy"
    budget = settings.deterministic_s
    remaining_options = sum(p.options for batch in batches for p in batch)
    for batch in batches:
        tenants = sorted(t for part in batch for t in part.tenants)
        options = sum(p.options for p in batch)
        share = budget * options / remaining_options
        remaining_options -= options
        left = settings.deadline - time.perf_counter()
        if left <= 0:
            stats = dataclasses.replace(stats, deadline_hit=True)
            break
        try:
            result = solve_cpsat(
                problem,
                time_limit_s=left,
                deterministic_limit_s=share,
                hint=best,
                tenants=tenants,
                num_workers=settings.num_workers,
                seed=settings.seed,
            )
        except Exception as exc:  # the greedy plan stands; say why
            keys = ", ".join(problem.tenants[t].tenant.key for t in tenants[:3])
            warnings.append(
                PlanWarning(
                    f"CP-SAT failed ({type(exc).__name__}: {exc}); the greedy plan stands for "
                    f"{len(tenants)} tenant(s) ({keys}{', ...' if len(tenants) > 3 else ''})"
                )
            )
            continue
        budget -= min(share, result.deterministic_s)
        stats = dataclasses.replace(
            stats,
            cpsat_components=stats.cpsat_components + len(batch),
            cpsat_options=stats.cpsat_options + result.options,
            cpsat_deterministic_s=stats.cpsat_deterministic_s + result.deterministic_s,
            cpsat_wall_s=stats.cpsat_wall_s + result.wall_s,
            deadline_hit=stats.deadline_hit or result.stopped_by_wall,
        )
        if not result.found:
            continue
        searched = {problem.tenants[t].tenant.key for t in tenants}
        candidate = {k: c for k, c in best.items() if k not in searched} | result.assignment
        if violations(problem, candidate):
            continue  # never expected (memory is rounded up in the program): keep what we have
        old, new = tenant_values(problem, best), tenant_values(problem, candidate)
        before, after = sum(old[t] for t in tenants), sum(new[t] for t in tenants)
        if after >= before - 1e-9 * max(1.0, abs(before)):
            best, name = candidate, "cp-sat"
        part_bound = sum(_part_bound(problem, p.tenants) for p in batch)
        if result.bound is not None and result.bound < part_bound:
            bound -= part_bound - max(result.bound, after)
        if result.optimal:
            proved += len(batch)
            stats = dataclasses.replace(stats, cpsat_proved=stats.cpsat_proved + len(batch))
    return best, stats, bound, proved, name


def _without(problem: Problem, errors: dict[int, str]) -> Problem:
    """The problem with these tenants left out as planning errors."""
    tenants = tuple(
        dataclasses.replace(tc, classes=(), pinned=False, error=errors[t]) if t in errors else tc
        for t, tc in enumerate(problem.tenants)
    )
    return dataclasses.replace(problem, tenants=tenants)


def _only(problem: Problem, keep: int) -> Problem:
    """The problem with every tenant but one given no options (for tracing an error to a tenant)."""
    tenants = tuple(
        tc if t == keep else dataclasses.replace(tc, classes=(), pinned=False)
        for t, tc in enumerate(problem.tenants)
    )
    return dataclasses.replace(problem, tenants=tenants)


def _isolate(problem: Problem, settings: _Search, started: float, error: Exception) -> Plan:
    """Solving failed unexpectedly: plan each tenant alone to find those that make it fail, leave
    them out as planning errors, and plan the others."""
    culprits: dict[int, str] = {}
    for t, tc in enumerate(problem.tenants):
        if not tc.classes:
            continue
        alone = _only(problem, t)
        try:
            build_plan(alone, polish(alone, solve_greedy(alone)), solver="greedy", solve_ms=0.0)
        except Exception as exc:  # this tenant is one that fails
            culprits[t] = planning_error(exc)
    if not culprits:  # no single tenant fails alone: the failure needs several; leave them all out
        culprits = {t: planning_error(error) for t, tc in enumerate(problem.tenants) if tc.classes}
    rest = _without(problem, culprits)
    try:
        return _solve(rest, settings, started)
    except Exception as exc:  # last resort: a plan that places nobody, saying why
        reason = planning_error(exc)
        return Plan(
            placements=(),
            unplaced=tuple(
                Unplaced(tc.tenant.key, reason, UnplacedKind.PLANNING_ERROR) for tc in problem.tenants
            ),
            objective=-problem.move_cost * sum(1 for tc in problem.tenants if tc.tenant.current is not None),
            solver="none",
            solve_ms=(time.perf_counter() - started) * 1000.0,
            moves=sum(1 for tc in problem.tenants if tc.tenant.current is not None),
            warnings=problem.warnings,
        )


def solve_baseline(snapshot: Snapshot, name: str, *, move_cost: float = DEFAULT_MOVE_COST) -> Plan:
    """Plan with one of the baselines (`BASELINES`), scored by the same objective."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    started = time.perf_counter()
    problem = compile_problem(snapshot, move_cost=move_cost)
    assignment = BASELINES[name](problem)
    return build_plan(problem, assignment, solver=name, solve_ms=(time.perf_counter() - started) * 1000.0)
