"""Placement: which device on which node serves each InferenceTenant, at what concurrency.

Public API (what the operator and the CLI use):

    snapshot = snapshot_from_objects(objects)   # Kubernetes object dicts -> Snapshot
    plan = solve(snapshot, time_limit_s=2.0)    # -> Plan (placements, unplaced with reasons, objective)

`Snapshot` and the types inside it (`Node`, `AcceleratorClass`, `Tenant`, `Profile`, ...) are
plain frozen dataclasses; `Plan` holds `Placement`s, `Unplaced` tenants (`kind` Unschedulable or
PlanningError), `warnings` (per tenant: `plan.tenant_warnings`) and `to_json()`. The reference
model and its objective are in `problem.py` (docs/placement.md has the long form). Everything
here is pure: no I/O, no clock (the plan's `solve_ms` is only reported).

Names load on first use (PEP 562), so `edgetenant plan --help` does not pay for numpy, pydantic
or OR-Tools.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgetenant.placement.objects import snapshot_from_objects
    from edgetenant.placement.plan import DeviceUsage, Placement, Plan, SearchStats, Unplaced, UnplacedKind
    from edgetenant.placement.problem import Assignment, Choice, DeviceRef, evaluate
    from edgetenant.placement.snapshot import (
        AcceleratorClass,
        CurrentPlacement,
        Node,
        PlanWarning,
        Profile,
        ProfilePoint,
        SharingMode,
        Snapshot,
        Taint,
        Tenant,
        Toleration,
    )
    from edgetenant.placement.solver import solve, solve_baseline

_WHERE = {
    "snapshot_from_objects": "objects",
    "DeviceUsage": "plan",
    "Placement": "plan",
    "Plan": "plan",
    "SearchStats": "plan",
    "Unplaced": "plan",
    "UnplacedKind": "plan",
    "Assignment": "problem",
    "Choice": "problem",
    "DeviceRef": "problem",
    "evaluate": "problem",
    "AcceleratorClass": "snapshot",
    "CurrentPlacement": "snapshot",
    "Node": "snapshot",
    "PlanWarning": "snapshot",
    "Profile": "snapshot",
    "ProfilePoint": "snapshot",
    "SharingMode": "snapshot",
    "Snapshot": "snapshot",
    "Taint": "snapshot",
    "Tenant": "snapshot",
    "Toleration": "snapshot",
    "solve": "solver",
    "solve_baseline": "solver",
}

__all__ = [
    "AcceleratorClass",
    "Assignment",
    "Choice",
    "CurrentPlacement",
    "DeviceRef",
    "DeviceUsage",
    "Node",
    "Placement",
    "Plan",
    "PlanWarning",
    "Profile",
    "ProfilePoint",
    "SearchStats",
    "SharingMode",
    "Snapshot",
    "Taint",
    "Tenant",
    "Toleration",
    "Unplaced",
    "UnplacedKind",
    "evaluate",
    "snapshot_from_objects",
    "solve",
    "solve_baseline",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
