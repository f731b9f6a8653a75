"""The reference model as a CP-SAT program. Pure: no I/O; the only clock is CP-SAT's own limit.

Linearisation of the sharing rule (served_t = demand_t * min(1, 1/U_d), U_d = sum u_t):
every tenant on a device is served the same fraction f_d = min(1, 1/U_d) of its demand, so
  x_o        bool, tenant t takes option o = (device d, concurrency c)
  F_d        int in [0, S], f_d = F_d / S (S = FRACTION_SCALE)
  V_o        int in [0, S]: V_o <= F_d, V_o <= S x_o, V_o >= F_d when x_o   (V_o = F_d x_o)
  sum_o ceil(M u_o) V_o <= M S                              (f_d * U_d <= 1, u rounded up)
  maximise   sum a_t V_o + move bonus, a_t = round(A * priority_t * demand_t)
Maximisation pushes F_d up to floor(S / U_d) (capped at S), so the program's objective is the
reference objective with f rounded down to 1/S and u rounded up to 1/M: never optimistic, and
within about 1/(S f_d) of it. Devices whose possible tenants can never saturate them get F_d = S
fixed and no V variables. The plan's objective is always recomputed exactly by `evaluate`.

Interchangeable devices (same class, same node labels and taints, nobody's current device) get
symmetry breaking: the k-th tenant that could use such a group may only take its first k+1
devices, and the hint is relabelled to match.

Ties are not in the program: an objective with a tie-break term below the main one makes
CP-SAT prove a lexicographic optimum (10-20x slower on small instances). `greedy.polish` breaks
ties afterwards instead.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

from edgetenant.placement import sat
from edgetenant.placement.problem import Assignment, Choice, Problem

FRACTION_SCALE = 10_000  # S
UTILISATION_SCALE = 10_000  # M
NO_PRESOLVE_OPTIONS = 200
WEIGHT_SCALE = 100_000  # the largest priority x demand maps to this integer


@dataclass(frozen=True, slots=True)
class CpSatResult:
    assignment: dict[str, Choice]  # the searched tenants only
    optimal: bool
    bound: float | None  # upper bound in reference units on the searched tenants' part of the objective
    status: str
    wall_s: float
    options: int = 0
    deterministic_s: float = 0.0  # CP-SAT's deterministic time used
    stopped_by_wall: bool = False  # the wall-clock limit, not the deterministic one, ended the search

    @property
    def found(self) -> bool:
        return self.status in ("OPTIMAL", "FEASIBLE")


@dataclass(frozen=True, slots=True)
class _Option:
    tenant: int
    device: int
    concurrency: int
    u: float
    memory: float


def solve_cpsat(
    problem: Problem,
    *,
    time_limit_s: float,
    deterministic_limit_s: float | None = None,
    hint: Assignment | None = None,
    tenants: Collection[int] | None = None,
    num_workers: int = 1,
    seed: int = 0,
) -> CpSatResult:
    """Best assignment CP-SAT finds for `tenants` (indices; default all); `found` is false when
    it found none within its limits.

    The others keep their places, so `tenants` must not share a device with them (a union of
    components: solver.components). The search stops at `deterministic_limit_s` of CP-SAT's
    deterministic time (the same on every machine) or at `time_limit_s` of wall time, whichever
    comes first: the wall limit is only a safety net.
    """
    searched = range(len(problem.tenants)) if tenants is None else sorted(tenants)
    groups = _interchangeable(problem)
    seen_in_group: dict[int, int] = {}  # group -> tenants that could use it so far
    options: list[_Option] = []
    for t in searched:
        tc = problem.tenants[t]
        rank_in: dict[int, int] = {}
        for cc in tc.classes:
            for d in cc.devices:
                if tc.pinned and d != tc.current:
                    continue
                if d in groups:
                    # Symmetry breaking over interchangeable devices: the k-th tenant that could
                    # use a group may only take its first k+1 devices (bins relabelled by their
                    # first tenant), so CP-SAT never explores mirror images.
                    group, position = groups[d]
                    if group not in rank_in:
                        rank_in[group] = seen_in_group.get(group, 0)
                        seen_in_group[group] = rank_in[group] + 1
                    if position > rank_in[group]:
                        continue
                for level in cc.levels:
                    u = tc.tenant.demand / level.throughput
                    options.append(_Option(t, d, level.concurrency, u, level.memory_mib))
    keys = {problem.tenants[t].tenant.key for t in searched}
    if hint is not None:
        hint = {key: choice for key, choice in hint.items() if key in keys}
        if groups:
            hint = _relabel(problem, hint, groups)
    if not options:
        return CpSatResult({}, True, _constant(problem, searched), "OPTIMAL", 0.0)

    pd = [tc.tenant.priority * tc.tenant.demand for tc in problem.tenants]
    # The largest weight, or the move cost if larger, maps to WEIGHT_SCALE: no coefficient can
    # overflow, whatever the demands and move cost.
    scale = _weight_scale(max(*(pd[t] for t in searched), problem.move_cost))
    weight = [round(v * scale) for v in pd]
    move_bonus = round(problem.move_cost * scale * FRACTION_SCALE)

    model = sat.Model()
    x = [model.new_bool_var(f"x{i}") for i in range(len(options))]
    by_tenant: dict[int, list[int]] = {}
    by_device: dict[int, list[int]] = {}
    by_pair: dict[tuple[int, int], list[int]] = {}
    tenants_on: dict[int, list[int]] = {}
    for i, o in enumerate(options):
        by_tenant.setdefault(o.tenant, []).append(i)
        by_device.setdefault(o.device, []).append(i)
        if (o.tenant, o.device) not in by_pair:
            tenants_on.setdefault(o.device, []).append(o.tenant)
        by_pair.setdefault((o.tenant, o.device), []).append(i)
    for members in by_tenant.values():
        model.add_at_most_one(x[i] for i in members)

    main: list[sat.LinearExprT] = []
    fraction: dict[int, sat.IntVar] = {}
    served_parts: dict[int, list[sat.IntVar]] = {}
    served_var: dict[int, sat.IntVar] = {}
    hint_choice = _hint_indices(problem, options, hint)
    for d, members in by_device.items():
        device = problem.devices[d]
        # Memory in 1/1000 MiB: tenant sizes rounded up, the device rounded down, never over.
        mem_coeffs = [math.ceil(options[i].memory * 1000 - 1e-6) for i in members]
        capacity = math.floor(device.memory_mib * 1000 + 1e-6)
        model.add(sum(c * x[i] for c, i in zip(mem_coeffs, members, strict=True)) <= capacity)
        model.add(sum(x[i] for i in members) <= device.slots)
        # Can the tenants that might land here ever saturate it? If not, f_d = 1.
        worst = sorted((max(options[i].u for i in by_pair[(t, d)]) for t in tenants_on[d]), reverse=True)
        if sum(worst[: device.slots]) <= 1.0:
            for i in members:
                main.append(weight[options[i].tenant] * FRACTION_SCALE * x[i])
            continue
        f = model.new_int_var(0, FRACTION_SCALE, f"f{d}")
        fraction[d] = f
        load_terms = []
        for i in members:
            # v = F_d * x_i: the served fraction of option i. One variable carries both the
            # capacity and the objective, so the LP relaxation is the fractional knapsack of
            # device time rather than nothing.
            v = model.new_int_var(0, FRACTION_SCALE, f"v{i}")
            model.add(v <= f)
            model.add(v <= FRACTION_SCALE * x[i])
            model.add(v >= f).only_enforce_if(x[i])
            load_terms.append(math.ceil(options[i].u * UTILISATION_SCALE) * v)
            main.append(weight[options[i].tenant] * v)
            served_parts.setdefault(options[i].tenant, []).append(v)
            served_var[i] = v
        model.add(sum(load_terms) <= UTILISATION_SCALE * FRACTION_SCALE)

    # Redundant but it lets propagation see that a tenant is served at most once.
    for t, parts in served_parts.items():
        fixed = [x[i] for i in by_tenant[t] if options[i].device not in fraction]
        model.add(sum(parts) + FRACTION_SCALE * sum(fixed) <= FRACTION_SCALE)

    for t in searched:
        current = problem.tenants[t].current
        if current is not None:
            for i in by_pair.get((t, current), []):
                main.append(move_bonus * x[i])

    model.maximize(sum(main))

    if hint is not None:
        _add_hints(
            model,
            options=options,
            x=x,
            fraction=fraction,
            served_var=served_var,
            chosen=hint_choice,
            by_device=by_device,
        )

    parameters = sat.SatParameters()
    parameters.max_time_in_seconds = max(time_limit_s, 0.001)
    if deterministic_limit_s is not None:
        parameters.max_deterministic_time = max(deterministic_limit_s, 0.0)
    parameters.num_workers = num_workers
    parameters.random_seed = seed
    # Full linearisation (big-M rows of the enforced constraints in the LP): measured 3-30x
    # faster to prove optimality on the benchmark's small instances.
    parameters.linearization_level = 2
    # Probing costs more than it saves on these programs: the same optima in about 2/3 of the
    # CPU time (50 x 20's EdgeTPU component, synthetic 10-20 tenant clusters).
    parameters.cp_model_probing_level = 0
    if len(options) <= NO_PRESOLVE_OPTIONS:
        # On small programs presolve costs more than the search: without it CP-SAT proved the
        # same optima (quality benchmark, 50 x 20's small components) in about half the time.
        parameters.cp_model_presolve = False
    response = sat.solve(model, parameters)
    status = response.status
    deterministic = float(response.deterministic_time)
    stopped_by_wall = status != sat.OPTIMAL and (
        deterministic_limit_s is None or deterministic < 0.99 * deterministic_limit_s
    )
    if status not in (sat.OPTIMAL, sat.FEASIBLE):
        return CpSatResult(
            {},
            False,
            None,
            status.name,
            response.wall_time,
            len(options),
            deterministic,
            stopped_by_wall,
        )
    chosen = {
        problem.tenants[o.tenant].tenant.key: Choice(problem.devices[o.device].ref, o.concurrency)
        for i, o in enumerate(options)
        if sat.boolean_value(response, x[i])
    }
    bound = response.best_objective_bound / (scale * FRACTION_SCALE) + _constant(problem, searched)
    return CpSatResult(
        assignment=chosen,
        optimal=status == sat.OPTIMAL,
        bound=bound,
        status=status.name,
        wall_s=response.wall_time,
        options=len(options),
        deterministic_s=deterministic,
        stopped_by_wall=stopped_by_wall,
    )


def _weight_scale(largest: float) -> float:
    return WEIGHT_SCALE / largest if largest > 0 else 1.0


def _constant(problem: Problem, tenants: Collection[int]) -> float:
    """The objective's constant part: every tenant with a current placement pays the move cost
    unless it stays (the program adds it back as a bonus for staying)."""
    return -problem.move_cost * sum(1 for t in tenants if problem.tenants[t].tenant.current is not None)


def _hint_indices(problem: Problem, options: list[_Option], hint: Assignment | None) -> set[int]:
    if hint is None:
        return set()
    wanted = {
        (problem.tenant_index[key], problem.device_index[c.device], c.concurrency) for key, c in hint.items()
    }
    return {i for i, o in enumerate(options) if (o.tenant, o.device, o.concurrency) in wanted}


def _add_hints(
    model: sat.Model,
    *,
    options: list[_Option],
    x: list[sat.IntVar],
    fraction: dict[int, sat.IntVar],
    served_var: dict[int, sat.IntVar],
    chosen: set[int],
    by_device: dict[int, list[int]],
) -> None:
    """A complete hint (every variable), so CP-SAT takes it as its first solution at once."""
    for i, var in enumerate(x):
        model.add_hint(var, i in chosen)
    for d, f in fraction.items():
        load = sum(math.ceil(options[i].u * UTILISATION_SCALE) for i in by_device[d] if i in chosen)
        value = min(FRACTION_SCALE, (UTILISATION_SCALE * FRACTION_SCALE) // load) if load else FRACTION_SCALE
        model.add_hint(f, value)
        for i in by_device[d]:
            model.add_hint(served_var[i], value if i in chosen else 0)


def _interchangeable(problem: Problem) -> dict[int, tuple[int, int]]:
    """device -> (group, position) for devices that no plan can tell apart: same class, nodes
    with the same labels and taints (so the same tenants may use them), and nobody's current
    device (which would carry a move bonus)."""
    nodes = {n.name: n for n in problem.snapshot.nodes}
    occupied = {tc.current for tc in problem.tenants if tc.current is not None}
    found: dict[tuple[object, ...], list[int]] = {}
    for i, device in enumerate(problem.devices):
        if i in occupied:
            continue
        node = nodes[device.ref.node]
        key = (device.ref.accelerator_class, tuple(sorted(node.labels.items())), node.taints)
        found.setdefault(key, []).append(i)
    return {
        d: (g, position)
        for g, members in enumerate(found.values())
        if len(members) > 1
        for position, d in enumerate(members)
    }


def _relabel(problem: Problem, hint: Assignment, groups: dict[int, tuple[int, int]]) -> dict[str, Choice]:
    """The same plan with interchangeable devices renumbered to satisfy the symmetry breaking:
    within a group, devices ordered by the first tenant (in problem order) they hold."""
    members: dict[int, list[int]] = {}
    for d, (g, _) in groups.items():
        members.setdefault(g, []).append(d)
    first: dict[int, int] = {}
    for key, choice in hint.items():
        d = problem.device_index[choice.device]
        t = problem.tenant_index[key]
        if d in groups:
            first[d] = min(first.get(d, t), t)
    mapping: dict[int, int] = {}
    for devices in members.values():
        ordered = sorted(devices, key=lambda d: groups[d][1])
        used = sorted((d for d in ordered if d in first), key=lambda d: first[d])
        mapping.update(zip(used, ordered, strict=False))
    result: dict[str, Choice] = {}
    for key, choice in hint.items():
        d = problem.device_index[choice.device]
        target = problem.devices[mapping.get(d, d)].ref
        result[key] = Choice(target, choice.concurrency)
    return result
