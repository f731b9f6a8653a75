"""A placement plan: where each tenant runs and what it is predicted to do, who is left out and
why (in words a person can act on), and how each device is used. Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgetenant.placement.problem import (
    Assignment,
    Choice,
    DeviceRef,
    Problem,
    TenantCandidates,
    evaluate,
    moved,
    served,
)


@dataclass(frozen=True, slots=True)
class Placement:
    tenant: str
    node: str
    accelerator_class: str
    device: int
    concurrency: int
    predicted_throughput: float  # served req/s under the sharing rule
    predicted_p95_ms: float  # p95 at this concurrency with the device to itself (profile or estimate)
    estimated: bool  # numbers come from estimates, not a ModelProfile
    moved: bool = False

    @property
    def choice(self) -> Choice:
        return Choice(DeviceRef(self.node, self.accelerator_class, self.device), self.concurrency)


@dataclass(frozen=True, slots=True)
class Unplaced:
    tenant: str
    reason: str


@dataclass(frozen=True, slots=True)
class DeviceUsage:
    node: str
    accelerator_class: str
    device: int
    memory_used_mib: float
    memory_mib: float
    slots_used: int
    slots: int
    utilisation: float  # U = sum demand/throughput; above 1 the device is saturated
    tenants: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    placements: tuple[Placement, ...]
    unplaced: tuple[Unplaced, ...]
    objective: float  # the reference objective (placement.problem.evaluate) of this plan
    solver: str
    solve_ms: float
    moves: int
    devices: tuple[DeviceUsage, ...] = ()
    optimal: bool = False  # CP-SAT proved no better plan exists (up to its integer scaling)
    bound: float | None = None  # upper bound on the objective that CP-SAT proved, when it ran

    def assignment(self) -> dict[str, Choice]:
        return {p.tenant: p.choice for p in self.placements}

    def to_json(self) -> dict[str, Any]:
        """The documented `edgetenant plan -o json` shape."""
        return {
            "placements": [
                {
                    "tenant": p.tenant,
                    "node": p.node,
                    "acceleratorClass": p.accelerator_class,
                    "device": p.device,
                    "concurrency": p.concurrency,
                    "predictedThroughput": round(p.predicted_throughput, 6),
                    "predictedP95Ms": round(p.predicted_p95_ms, 6),
                    "estimated": p.estimated,
                }
                for p in self.placements
            ],
            "unplaced": [{"tenant": u.tenant, "reason": u.reason} for u in self.unplaced],
            "objective": round(self.objective, 6),
            "solver": self.solver,
            "solveMs": round(self.solve_ms, 3),
        }


def build_plan(
    problem: Problem,
    assignment: Assignment,
    *,
    solver: str,
    solve_ms: float,
    optimal: bool = False,
    bound: float | None = None,
) -> Plan:
    objective = evaluate(problem, assignment)  # also checks feasibility
    served_by = served(problem, assignment)
    moved_keys = set(moved(problem, assignment))
    placements = []
    for key in sorted(assignment):
        choice = assignment[key]
        level = problem.level(key, choice)
        assert level is not None  # evaluate() checked it
        placements.append(
            Placement(
                tenant=key,
                node=choice.device.node,
                accelerator_class=choice.device.accelerator_class,
                device=choice.device.index,
                concurrency=choice.concurrency,
                predicted_throughput=served_by[key],
                predicted_p95_ms=level.p95_ms,
                estimated=level.estimated,
                moved=key in moved_keys,
            )
        )
    usage = device_usage(problem, assignment)
    unplaced = tuple(
        Unplaced(tc.tenant.key, unplaced_reason(problem, tc, usage))
        for tc in problem.tenants
        if tc.tenant.key not in assignment
    )
    return Plan(
        placements=tuple(placements),
        unplaced=unplaced,
        objective=objective,
        solver=solver,
        solve_ms=solve_ms,
        moves=len(moved_keys),
        devices=tuple(usage.values()),
        optimal=optimal,
        bound=bound,
    )


def device_usage(problem: Problem, assignment: Assignment) -> dict[DeviceRef, DeviceUsage]:
    """Every device of the snapshot (used or not) with its memory, slots and utilisation."""
    members: dict[DeviceRef, list[str]] = {d.ref: [] for d in problem.devices}
    for key in sorted(assignment):
        members[assignment[key].device].append(key)
    result = {}
    for device in problem.devices:
        keys = members[device.ref]
        memory = utilisation = 0.0
        for key in keys:
            level = problem.level(key, assignment[key])
            assert level is not None
            memory += level.memory_mib
            utilisation += problem.tenants[problem.tenant_index[key]].tenant.demand / level.throughput
        result[device.ref] = DeviceUsage(
            node=device.ref.node,
            accelerator_class=device.ref.accelerator_class,
            device=device.ref.index,
            memory_used_mib=memory,
            memory_mib=device.memory_mib,
            slots_used=len(keys),
            slots=device.slots,
            utilisation=utilisation,
            tenants=tuple(keys),
        )
    return result


def unplaced_reason(problem: Problem, tc: TenantCandidates, usage: dict[DeviceRef, DeviceUsage]) -> str:
    tenant = tc.tenant
    if not tc.classes:
        return "; ".join(tc.rejections) or "no compatible device"
    candidates = [(cc, d) for cc in tc.classes for d in cc.devices if not tc.pinned or d == tc.current]
    prefix = ""
    if tc.pinned:
        why = (
            "allowMove is false"
            if not tenant.allow_move
            else f"{tenant.moves_in_last_hour} moves in the last hour reach maxMovesPerHour "
            f"{tenant.max_moves_per_hour}"
        )
        prefix = f"may not move ({why}) and its device is taken: "
    with_slot = [
        (cc, d) for cc, d in candidates if usage[problem.devices[d].ref].slots_used < problem.devices[d].slots
    ]
    if not with_slot:
        return prefix + f"all {len(candidates)} compatible devices are full (no free slot)"
    need = min(min(lv.memory_mib for lv in cc.levels) for cc, _ in with_slot)
    free = max(
        problem.devices[d].memory_mib - usage[problem.devices[d].ref].memory_used_mib for _, d in with_slot
    )
    if all(
        min(lv.memory_mib for lv in cc.levels)
        > problem.devices[d].memory_mib - usage[problem.devices[d].ref].memory_used_mib + 1e-9
        for cc, d in with_slot
    ):
        return prefix + f"needs {need:.0f} MiB, largest free on a compatible device is {free:.0f} MiB"
    return prefix + (
        "every compatible device with room is saturated: placing it (priority "
        f"{tenant.priority:g}, {tenant.demand:g} req/s) would take more from the tenants there than it adds"
    )
