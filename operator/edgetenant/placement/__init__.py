"""Placement: which device on which node serves each InferenceTenant, at what concurrency.

Public API (what the operator and the CLI use):

    snapshot = snapshot_from_objects(objects)   # Kubernetes object dicts -> Snapshot
    plan = solve(snapshot, time_limit_s=2.0)    # -> Plan (placements, unplaced with reasons, objective)

`Snapshot` and the types inside it (`Node`, `AcceleratorClass`, `Tenant`, `Profile`, ...) are
plain frozen dataclasses; `Plan` holds `Placement`s and `Unplaced` tenants and `to_json()`. The
reference model and its objective are in `problem.py` (docs/placement.md has the long form).
Everything here is pure: no I/O, no clock (the plan's `solve_ms` is only reported).
"""

from edgetenant.placement.objects import snapshot_from_objects
from edgetenant.placement.plan import DeviceUsage, Placement, Plan, Unplaced
from edgetenant.placement.problem import Assignment, Choice, DeviceRef, evaluate
from edgetenant.placement.snapshot import (
    AcceleratorClass,
    CurrentPlacement,
    Node,
    Profile,
    ProfilePoint,
    SharingMode,
    Snapshot,
    Taint,
    Tenant,
    Toleration,
)
from edgetenant.placement.solver import solve, solve_baseline

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
    "Profile",
    "ProfilePoint",
    "SharingMode",
    "Snapshot",
    "Taint",
    "Tenant",
    "Toleration",
    "Unplaced",
    "evaluate",
    "snapshot_from_objects",
    "solve",
    "solve_baseline",
]
