"""A placement plan: where each tenant runs and what it is predicted to do, who is left out and
why (in words a person can act on), and how each device is used. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
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
from edgetenant.placement.snapshot import PlanWarning

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


class UnplacedKind(StrEnum):
    UNSCHEDULABLE = "Unschedulable"  # the model says it does not fit (or is worth less placed)
    PLANNING_ERROR = "PlanningError"  # planning it failed unexpectedly: a bug, not the tenant's input


@dataclass(frozen=True, slots=True)
class Unplaced:
    tenant: str
    reason: str
    kind: UnplacedKind = UnplacedKind.UNSCHEDULABLE


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
    optimal: bool = False  # proved: no better plan exists (CP-SAT up to its integer scaling)
    bound: float | None = None  # an upper bound on the objective (proved by CP-SAT or the all-served one)
    # What was ignored or interpreted, and why: `tenant` set when it concerns one tenant.
    warnings: tuple[PlanWarning, ...] = ()
    search: SearchStats | None = None  # how `solve` got there (None for baselines)

    def assignment(self) -> dict[str, Choice]:
        return {p.tenant: p.choice for p in self.placements}

    @property
    def tenant_warnings(self) -> Mapping[str, tuple[str, ...]]:
        """tenant key -> its warnings (only tenants that have some)."""
        found: dict[str, list[str]] = {}
        for w in self.warnings:
            if w.tenant is not None:
                found.setdefault(w.tenant, []).append(w.message)
        return {key: tuple(messages) for key, messages in found.items()}

    @property
    def global_warnings(self) -> tuple[str, ...]:
        """Warnings about the input as a whole (not about one tenant)."""
        return tuple(w.message for w in self.warnings if w.tenant is None)

    @property
    def planning_errors(self) -> tuple[Unplaced, ...]:
        """Tenants left out because planning them failed unexpectedly (kind PlanningError)."""
        return tuple(u for u in self.unplaced if u.kind is UnplacedKind.PLANNING_ERROR)

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
            "unplaced": [
                {"tenant": u.tenant, "kind": u.kind.value, "reason": u.reason} for u in self.unplaced
            ],
            "warnings": [
                {"tenant": w.tenant, "message": w.message} if w.tenant is not None else {"message": w.message}
                for w in self.warnings
            ],
            "objective": round(self.objective, 6),
            "optimal": self.optimal,
            "moves": self.moves,
            "solver": self.solver,
            "solveMs": round(self.solve_ms, 3),
        }


@dataclass(frozen=True, slots=True)
class SearchStats:
    """How `solve` reached its plan (for benchmarks and logs; nothing decides on it)."""

    greedy_objective: float  # the greedy plan, before CP-SAT and tie-breaking
    components: int = 0  # independent groups of tenants and the devices they could use
    proved_by_bound: int = 0  # components whose greedy plan reached their all-served bound
    cpsat_components: int = 0  # components CP-SAT searched
    cpsat_proved: int = 0  # of those, proved optimal
    cpsat_options: int = 0  # (tenant, device, concurrency) options in the CP-SAT programs
    cpsat_deterministic_s: float = 0.0  # CP-SAT's deterministic time, all programs together
    cpsat_wall_s: float = 0.0
    deadline_hit: bool = False  # the wall-clock safety net cut a search short: runs may differ


def build_plan(
    problem: Problem,
    assignment: Assignment,
    *,
    solver: str,
    solve_ms: float,
    optimal: bool = False,
    bound: float | None = None,
    warnings: tuple[PlanWarning, ...] = (),
    search: SearchStats | None = None,
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
    unplaced = [
        Unplaced(
            tc.tenant.key,
            unplaced_reason(problem, tc, room),
            UnplacedKind.PLANNING_ERROR if tc.error else UnplacedKind.UNSCHEDULABLE,
        )
        for tc in problem.tenants
        if tc.tenant.key not in assignment
    ]
    unplaced += [
        Unplaced(key, f"internal planning error (please report it): {why}", UnplacedKind.PLANNING_ERROR)
        for key, why in problem.snapshot.unreadable_tenants
        if key not in problem.tenant_index
    ]
    return Plan(
        placements=tuple(placements),
        unplaced=tuple(sorted(unplaced, key=lambda u: u.tenant)),
        objective=objective,
        solver=solver,
        solve_ms=solve_ms,
        moves=len(moved_keys),
        devices=tuple(usage.values()),
        optimal=optimal,
        bound=bound,
        warnings=problem.warnings + warnings,
        search=search,
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
    if tc.error is not None:
        return tc.error
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
