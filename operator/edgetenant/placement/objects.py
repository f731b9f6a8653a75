"""Kubernetes objects -> Snapshot. Pure: takes object dicts (from YAML files or a cluster list),
parses the edgetenant kinds with the API models, and reads Nodes directly.
Raises ConfigError naming the object when one is malformed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import pydantic

from edgetenant import api
from edgetenant.errors import ConfigError
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

DEFAULT_DEMAND_RPS = 1.0  # a tenant that declares no slo.throughput and has no observed rate
_UNSCHEDULABLE = Taint("node.kubernetes.io/unschedulable", "NoSchedule")
_QUANTITY = re.compile(r"^([0-9]+)(k|M|G|T|Ki|Mi|Gi|Ti)?$")
_SUFFIX = {
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def describe(obj: Mapping[str, Any]) -> str:
    """`Kind namespace/name` for error messages."""
    meta = obj.get("metadata") or {}
    name = meta.get("name", "<no name>") if isinstance(meta, Mapping) else "<no name>"
    namespace = meta.get("namespace") if isinstance(meta, Mapping) else None
    return f"{obj.get('kind', '<no kind>')} {namespace + '/' if namespace else ''}{name}"


def parse_count(raw: object) -> int:
    """An extended-resource quantity as a device count (0 when it is not a whole number)."""
    match = _QUANTITY.match(str(raw).strip())
    if match is None:
        return 0
    return int(match.group(1)) * _SUFFIX.get(match.group(2) or "", 1)


def _tolerations(items: Iterable[api.Toleration]) -> tuple[Toleration, ...]:
    return tuple(
        Toleration(
            key=t.key or "",
            operator=t.operator.value,
            value=t.value or "",
            effect=t.effect.value if t.effect else "",
        )
        for t in items
    )


def node_from_object(obj: Mapping[str, Any]) -> Node:
    try:
        meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
        taints = tuple(
            Taint(
                key=str(t["key"]), effect=str(t.get("effect", "NoSchedule")), value=str(t.get("value") or "")
            )
            for t in spec.get("taints") or []
        )
        if spec.get("unschedulable"):
            taints += (_UNSCHEDULABLE,)
        conditions = status.get("conditions")
        # A Node without conditions (a hand-written topology) counts as Ready.
        ready = conditions is None or any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
        )
        allocatable = {str(k): parse_count(v) for k, v in (status.get("allocatable") or {}).items()}
        return Node(
            name=str(meta["name"]),
            labels=MappingProxyType({str(k): str(v) for k, v in (meta.get("labels") or {}).items()}),
            taints=taints,
            allocatable=MappingProxyType(allocatable),
            ready=ready,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{describe(obj)}: not a valid Node ({exc!r})") from exc


def class_from_model(ac: api.AcceleratorClass) -> AcceleratorClass:
    spec = ac.spec
    return AcceleratorClass(
        name=ac.name,
        resource_name=spec.resource_name,
        memory_per_device_mib=spec.memory_per_device_mib,
        formats=tuple(f.format.value for f in spec.formats),
        node_selector=MappingProxyType(dict(spec.node_selector)),
        tolerations=_tolerations(spec.tolerations),
        sharing=SharingMode(spec.sharing.mode.value),
        slots=spec.sharing.slots,
        relative_speed=spec.relative_speed,
    )


def profile_from_model(mp: api.ModelProfile) -> Profile:
    spec = mp.spec
    return Profile(
        model=spec.model,
        accelerator_class=spec.accelerator_class,
        namespace=mp.namespace or "",
        ceiling=spec.ceiling,
        points=tuple(
            ProfilePoint(
                concurrency=p.concurrency,
                throughput=p.throughput,
                p95_ms=p.latency_p95_ms,
                # NB: a point without memory is filled in from the tenant's hint at compile time.
                memory_mib=float(p.memory_mib) if p.memory_mib is not None else -1.0,
                batch_size=p.batch_size,
            )
            for p in spec.points
            if p.throughput > 0
        ),
    )


def _device_index(raw: str | None) -> int:
    return int(raw) if raw is not None and raw.isdigit() else 0


def tenant_from_model(it: api.InferenceTenant) -> Tenant:
    spec, status = it.spec, it.status
    conc = spec.concurrency
    lo, hi = (
        (conc.value, conc.value)
        if conc.mode == api.ConcurrencyMode.FIXED and conc.value
        else (conc.min, conc.max)
    )
    demand = spec.slo.throughput
    if demand is None and status is not None and status.observed is not None:
        demand = status.observed.throughput
    current = None
    if status is not None and status.active_placement is not None:
        active = status.active_placement
        current = CurrentPlacement(active.node, active.accelerator_class, _device_index(active.device))
    return Tenant(
        key=it.key,
        model=it.served_model_name,
        format=spec.model.format.value,
        demand=DEFAULT_DEMAND_RPS if demand is None else demand,
        accelerator_classes=tuple(spec.accelerator_classes),
        node_selector=MappingProxyType(dict(spec.placement.node_selector)),
        tolerations=_tolerations(spec.placement.tolerations),
        min_concurrency=lo,
        max_concurrency=hi,
        initial_concurrency=min(max(conc.initial, lo), hi),
        ceiling=status.concurrency.ceiling if status is not None and status.concurrency is not None else None,
        p95_slo_ms=spec.slo.latency_p95_ms,
        priority=float(spec.priority),
        memory_hint_mib=float(spec.model.memory_hint_mib) if spec.model.memory_hint_mib else None,
        current=current,
        allow_move=spec.placement.allow_move,
        moves_in_last_hour=(status.moves_in_last_hour or 0) if status is not None else 0,
        max_moves_per_hour=spec.placement.max_moves_per_hour,
    )


def snapshot_from_objects(objects: Iterable[Mapping[str, Any] | api.Resource]) -> Snapshot:
    """Build a Snapshot from Node, AcceleratorClass, InferenceTenant and ModelProfile dicts (or
    already-parsed API models); other kinds are ignored. Raises ConfigError naming the first
    malformed object."""
    nodes: dict[str, Node] = {}
    classes: dict[str, AcceleratorClass] = {}
    tenants: dict[str, Tenant] = {}
    profiles: list[Profile] = []
    for obj in objects:
        parsed: api.Resource | dict[str, Any]
        if isinstance(obj, api.InferenceTenant | api.AcceleratorClass | api.ModelProfile):
            parsed = obj  # already parsed by the caller (the operator's watch handlers)
        elif obj.get("kind") == "Node":
            node = node_from_object(obj)
            nodes[node.name] = node
            continue
        else:
            try:
                parsed = api.parse_object(obj)
            except pydantic.ValidationError as exc:
                raise ConfigError(f"{describe(obj)}: {_first_errors(exc)}") from exc
        if isinstance(parsed, api.AcceleratorClass):
            classes[parsed.name] = class_from_model(parsed)
        elif isinstance(parsed, api.InferenceTenant):
            if not parsed.metadata.namespace:
                parsed = parsed.model_copy(
                    update={"metadata": parsed.metadata.model_copy(update={"namespace": "default"})}
                )
            tenants[parsed.key] = tenant_from_model(parsed)
        elif isinstance(parsed, api.ModelProfile):
            profiles.append(profile_from_model(parsed))
    return Snapshot(
        nodes=tuple(nodes[k] for k in sorted(nodes)),
        classes=tuple(classes[k] for k in sorted(classes)),
        tenants=tuple(tenants[k] for k in sorted(tenants)),
        profiles=tuple(profiles),
    )


def _first_errors(exc: pydantic.ValidationError, limit: int = 3) -> str:
    parts = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:limit]]
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
