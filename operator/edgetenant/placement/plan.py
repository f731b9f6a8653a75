"""A placement plan: where each tenant runs and what it is predicted to do, who is left out and
why (in words a person can act on), and how each device is used. Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

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

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


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
    by_index = [usage[d.ref] for d in problem.devices]
    room = (
        np.array([u.memory_mib - u.memory_used_mib for u in by_index], dtype=np.float64),
        np.array([u.slots_used < u.slots for u in by_index], dtype=np.bool_),
    )
    unplaced = tuple(
        Unplaced(tc.tenant.key, unplaced_reason(problem, tc, room))
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


def unplaced_reason(problem: Problem, tc: TenantCandidates, room: tuple[FloatArray, BoolArray]) -> str:
    """Why a tenant is left out; `room` is (free memory, has a free slot) per device index."""
    tenant = tc.tenant
    if not tc.classes:
        return "; ".join(tc.rejections) or "no compatible device"
    prefix = ""
    if tc.pinned:
        why = (
            "allowMove is false"
            if not tenant.allow_move
            else f"{tenant.moves_in_last_hour} moves in the last hour reach maxMovesPerHour "
            f"{tenant.max_moves_per_hour}"
        )
        prefix = f"may not move ({why}) and its device is taken: "
    free_memory, has_slot = room
    candidates = with_slot = 0
    largest_free = -1.0
    fits = False
    for cc in tc.classes:
        devices = np.array([tc.current] if tc.pinned else cc.devices, dtype=np.int64)
        if tc.pinned and tc.current not in cc.devices:
            continue
        candidates += devices.size
        open_ = devices[has_slot[devices]]
        with_slot += open_.size
        if open_.size:
            free = float(free_memory[open_].max())
            largest_free = max(largest_free, free)
            fits = fits or min(lv.memory_mib for lv in cc.levels) <= free + 1e-9
    if not with_slot:
        return prefix + f"all {candidates} compatible devices are full (no free slot)"
    if not fits:
        need = min(min(lv.memory_mib for lv in cc.levels) for cc in tc.classes)
        return prefix + f"needs {need:.0f} MiB, largest free on a compatible device is {largest_free:.0f} MiB"
    return prefix + (
        "every compatible device with room is saturated: placing it (priority "
        f"{tenant.priority:g}, {tenant.demand:g} req/s) would take more from the tenants there than it adds"
    )
