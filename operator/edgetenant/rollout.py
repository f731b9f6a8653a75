"""Whether a tenant's rollout can be make-before-break on its target node. Pure.

Make-before-break (`maxSurge: 1, maxUnavailable: 0`) starts the new pod while the old one still
holds its device. On a node whose devices are all spoken for, the new pod can never be scheduled:
the old pod waits for the new one to be ready, the new one waits for a device, and the move stalls
for ever. Two such nodes swapping tenants deadlock the same way. So a rollout surges only when the
target node has a device replica to spare for the moment both pods exist; otherwise it replaces the
pod (`maxSurge: 0, maxUnavailable: 1`): a short gap in serving instead of a stall.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class DeviceUse:
    """One pod (existing) or one planned tenant on a node's device resource."""

    tenant: str
    node: str
    resource: str


def can_surge(
    *,
    tenant: str,
    node: str,
    resource: str,
    allocatable: int,
    planned: Iterable[DeviceUse],
    running: Iterable[DeviceUse],
) -> bool:
    """True when `tenant`'s new pod on `node` fits beside every pod that may still hold a device there.

    Counted in device-plugin replicas of `resource` on `node`: every tenant the plan puts there, every
    tenant whose pod runs there but is planned elsewhere (it leaves only after its own new pod is
    ready), and `tenant`'s own old pod there, if any. A class without a device resource (CPU) always
    surges.
    """
    if not resource:
        return True
    here = {u.tenant for u in planned if u.node == node and u.resource == resource}
    holding = {u.tenant for u in running if u.node == node and u.resource == resource}
    leaving = holding - here
    own_old = 1 if tenant in holding else 0
    return len(here) + len(leaving) + own_old <= allocatable


def pod_device_uses(pods: Mapping[str, Iterable[Mapping[str, Any]]]) -> list[DeviceUse]:
    """Device resources held by the tenants' existing pods (tenant key -> pods), from their limits."""
    uses: list[DeviceUse] = []
    for key, items in pods.items():
        for pod in items:
            spec = pod.get("spec") or {}
            node = spec.get("nodeName")
            if not node or (pod.get("status") or {}).get("phase") in {"Succeeded", "Failed"}:
                continue
            for container in spec.get("containers") or []:
                limits = (container.get("resources") or {}).get("limits") or {}
                uses.extend(
                    DeviceUse(key, str(node), str(name))
                    for name in limits
                    if "/" in str(name)  # extended resources are domain-qualified
                )
    return uses
