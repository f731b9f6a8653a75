"""Kubernetes objects -> Snapshot. Pure: takes object dicts (from YAML files or a cluster list),
parses the edgetenant kinds with the API models, and reads Nodes directly.

What it ignores or interprets (a wrong apiVersion, a duplicate, a device count that is not a whole
number, ...) becomes a `PlanWarning` in the snapshot, so the plan can say so. A malformed object
raises ConfigError naming it when `strict` (the CLI: the user fixes the file); otherwise (the
operator) it is left out with a warning, and an unreadable InferenceTenant is reported unplaced
as a planning error instead of stopping the plan for everyone.
"""

from __future__ import annotations

import math
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
    PlanWarning,
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


def node_from_object(obj: Mapping[str, Any], warnings: list[PlanWarning] | None = None) -> Node:
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
        name = str(meta["name"])
        allocatable: dict[str, int] = {}
        for key, raw in (status.get("allocatable") or {}).items():
            allocatable[str(key)] = parse_count(raw)
            # Only extended resources (vendor/name) count devices; cpu and memory are fractional.
            if "/" in str(key) and _QUANTITY.match(str(raw).strip()) is None and warnings is not None:
                warnings.append(
                    PlanWarning(
                        f"Node {name}: allocatable {key} is {raw!r}, not a whole number of devices: "
                        "counted as 0"
                    )
                )
        return Node(
            name=name,
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
    """Every point as given: the planner decides which it can use (and says why it ignored one)."""
    spec = mp.spec
    return Profile(
        model=spec.model,
        accelerator_class=spec.accelerator_class,
        namespace=mp.namespace or "",
        name=mp.name,
        ceiling=spec.ceiling,
        points=tuple(
            ProfilePoint(
                concurrency=p.concurrency,
                throughput=p.throughput,
                p95_ms=p.latency_p95_ms,
                memory_mib=float(p.memory_mib) if p.memory_mib is not None else None,
                batch_size=p.batch_size,
            )
            for p in spec.points
        ),
    )


def _device_index(raw: str | None) -> int | None:
    """A device id as a number; None when it is not one (the caller warns and takes 0)."""
    if not raw:
        return 0
    try:
        return int(raw) if raw.isdecimal() else None
    except ValueError:
        return None


def tenant_from_model(it: api.InferenceTenant, warnings: list[PlanWarning] | None = None) -> Tenant:
    spec, status = it.spec, it.status
    notes: list[str] = []
    conc = spec.concurrency
    fixed = conc.mode == api.ConcurrencyMode.FIXED
    if fixed and conc.value is None:
        notes.append(f"concurrency.mode Fixed without a value: min..max ({conc.min}..{conc.max}) used")
    lo, hi = (conc.value, conc.value) if fixed and conc.value else (conc.min, conc.max)
    demand = spec.slo.throughput
    if demand is None and status is not None and status.observed is not None:
        demand = status.observed.throughput
    if demand is not None and not (math.isfinite(demand) and demand >= 0):
        notes.append(f"demand {demand} is not a finite number of req/s: {DEFAULT_DEMAND_RPS:g} req/s used")
        demand = None
    current = None
    if status is not None and status.active_placement is not None:
        active = status.active_placement
        index = _device_index(active.device)
        if index is None:
            notes.append(f"status.activePlacement.device {active.device!r} is not a number: device 0 assumed")
        current = CurrentPlacement(active.node, active.accelerator_class, index or 0)
    if warnings is not None:
        warnings.extend(PlanWarning(note, it.key) for note in notes)
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


_KINDS = ("InferenceTenant", "AcceleratorClass", "ModelProfile")


def _tenant_key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    if not isinstance(meta, Mapping):
        meta = {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name') or '<no name>'}"


def snapshot_from_objects(
    objects: Iterable[Mapping[str, Any] | api.Resource], *, strict: bool = False
) -> Snapshot:
    """Build a Snapshot from Node, AcceleratorClass, InferenceTenant and ModelProfile dicts (or
    already-parsed API models); other kinds are ignored.

    `strict` (the CLI): a malformed object raises ConfigError naming it. Otherwise (the operator)
    it is left out with a warning; an InferenceTenant that cannot be read is listed in
    `Snapshot.unreadable_tenants` and reported unplaced as a planning error, so one bad object
    never stops the plan for the others."""
    nodes: dict[str, Node] = {}
    classes: dict[str, AcceleratorClass] = {}
    tenants: dict[str, Tenant] = {}
    profiles: dict[str, Profile] = {}
    ignored_classes: dict[str, str] = {}
    unreadable: dict[str, str] = {}
    warnings: list[PlanWarning] = []

    def keep(kind: str, name: str, found: dict[str, Any], value: Any) -> None:
        if name in found:
            warnings.append(PlanWarning(f"{kind} {name} is given twice: the last one is used"))
        found[name] = value

    for obj in objects:
        parsed: api.Resource | dict[str, Any]
        if isinstance(obj, api.InferenceTenant | api.AcceleratorClass | api.ModelProfile):
            parsed = obj  # already parsed by the caller (the operator's watch handlers)
        elif obj.get("kind") == "Node":
            try:
                node = node_from_object(obj, warnings)
            except ConfigError as exc:
                if strict:
                    raise
                warnings.append(PlanWarning(f"{exc}: ignored"))
                continue
            keep("Node", node.name, nodes, node)
            continue
        else:
            kind, version = obj.get("kind"), obj.get("apiVersion")
            if kind in _KINDS and version != api.API_VERSION:
                why = f"apiVersion {version!r} is not {api.API_VERSION}"
                warnings.append(PlanWarning(f"{describe(obj)} ignored: {why}"))
                if kind == "AcceleratorClass":
                    meta = obj.get("metadata") or {}
                    ignored_classes[str(meta.get("name") if isinstance(meta, Mapping) else None)] = why
                continue
            try:
                parsed = api.parse_object(obj)
            except pydantic.ValidationError as exc:
                if strict:
                    raise ConfigError(f"{describe(obj)}: {_first_errors(exc)}") from exc
                message = f"{describe(obj)} could not be read: {_first_errors(exc)}"
                if kind == "InferenceTenant":
                    unreadable[_tenant_key(obj)] = message
                else:
                    warnings.append(PlanWarning(f"{message}: ignored"))
                    if kind == "AcceleratorClass":
                        meta = obj.get("metadata") or {}
                        name = str(meta.get("name") if isinstance(meta, Mapping) else None)
                        ignored_classes[name] = f"it could not be read ({_first_errors(exc)})"
                continue
        if isinstance(parsed, api.AcceleratorClass):
            keep("AcceleratorClass", parsed.name, classes, class_from_model(parsed))
        elif isinstance(parsed, api.InferenceTenant):
            if not parsed.metadata.namespace:
                parsed = parsed.model_copy(
                    update={"metadata": parsed.metadata.model_copy(update={"namespace": "default"})}
                )
            keep("InferenceTenant", parsed.key, tenants, tenant_from_model(parsed, warnings))
        elif isinstance(parsed, api.ModelProfile):
            profile = profile_from_model(parsed)
            keep("ModelProfile", profile.key, profiles, profile)
    for name in classes:
        ignored_classes.pop(name, None)  # a valid class of the same name stands
    return Snapshot(
        nodes=tuple(nodes[k] for k in sorted(nodes)),
        classes=tuple(classes[k] for k in sorted(classes)),
        tenants=tuple(tenants[k] for k in sorted(tenants)),
        profiles=tuple(profiles[k] for k in sorted(profiles)),
        # In a fixed order, so the same objects in any order give the same plan.
        warnings=tuple(sorted(dict.fromkeys(warnings), key=lambda w: (w.tenant or "", w.message))),
        ignored_classes=tuple(sorted(ignored_classes.items())),
        unreadable_tenants=tuple(sorted((k, v) for k, v in unreadable.items() if k not in tenants)),
    )


def objects_from_snapshot(snapshot: Snapshot) -> list[dict[str, Any]]:
    """Kubernetes object dicts that `snapshot_from_objects` reads back as this snapshot (the
    inverse, for tests and benchmarks that go through the operator's path). Memories are written
    as whole MiB, as the API has them; classes get a placeholder backend and image."""
    objects: list[dict[str, Any]] = []
    for node in snapshot.nodes:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": node.name, "labels": dict(node.labels)},
                "spec": {
                    "taints": [{"key": t.key, "value": t.value, "effect": t.effect} for t in node.taints]
                },
                "status": {
                    "allocatable": {k: str(v) for k, v in node.allocatable.items()},
                    "conditions": [{"type": "Ready", "status": "True" if node.ready else "False"}],
                },
            }
        )
    for cls in snapshot.classes:
        spec: dict[str, Any] = {
            "resourceName": cls.resource_name,
            "nodeSelector": dict(cls.node_selector),
            "tolerations": [_toleration_dict(t) for t in cls.tolerations],
            "memoryPerDeviceMiB": cls.memory_per_device_mib,
            "sharing": {"mode": cls.sharing.value, "slots": cls.slots},
            "formats": [
                {"format": f, "backend": "onnxruntime", "image": "triton:placeholder"} for f in cls.formats
            ],
            "instanceKind": "KIND_CPU",
        }
        if cls.relative_speed is not None:
            spec["relativeSpeed"] = cls.relative_speed
        objects.append(
            {
                "apiVersion": api.API_VERSION,
                "kind": "AcceleratorClass",
                "metadata": {"name": cls.name},
                "spec": spec,
            }
        )
    for t in snapshot.tenants:
        namespace, _, name = t.key.partition("/")
        model: dict[str, Any] = {"name": t.model, "format": t.format, "uri": f"file:///models/{t.model}"}
        if t.memory_hint_mib is not None:
            model["memoryHintMiB"] = max(1, round(t.memory_hint_mib))
        slo: dict[str, Any] = {"throughput": t.demand}
        if t.p95_slo_ms is not None:
            slo["latencyP95Ms"] = t.p95_slo_ms
        status: dict[str, Any] = {"movesInLastHour": t.moves_in_last_hour}
        if t.current is not None:
            status["activePlacement"] = {
                "node": t.current.node,
                "acceleratorClass": t.current.accelerator_class,
                "device": str(t.current.device),
            }
        if t.ceiling is not None:
            status["concurrency"] = {"current": 0, "target": 0, "ceiling": t.ceiling}
        objects.append(
            {
                "apiVersion": api.API_VERSION,
                "kind": "InferenceTenant",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "model": model,
                    "acceleratorClasses": list(t.accelerator_classes),
                    "slo": slo,
                    "concurrency": {
                        "min": t.min_concurrency,
                        "max": t.max_concurrency,
                        "initial": t.initial_concurrency,
                    },
                    "priority": round(t.priority),
                    "placement": {
                        "nodeSelector": dict(t.node_selector),
                        "tolerations": [_toleration_dict(x) for x in t.tolerations],
                        "allowMove": t.allow_move,
                        "maxMovesPerHour": t.max_moves_per_hour,
                    },
                },
                "status": status,
            }
        )
    for p in snapshot.profiles:
        meta: dict[str, Any] = {"name": p.name or f"{p.model}.{p.accelerator_class}"}
        if p.namespace:
            meta["namespace"] = p.namespace
        points = []
        for point in p.points:
            entry: dict[str, Any] = {
                "concurrency": point.concurrency,
                "batchSize": point.batch_size,
                "throughput": point.throughput,
                "latencyP95Ms": point.p95_ms,
            }
            if point.memory_mib is not None:
                entry["memoryMiB"] = round(point.memory_mib)
            points.append(entry)
        spec = {"model": p.model, "acceleratorClass": p.accelerator_class, "points": points}
        if p.ceiling is not None:
            spec["ceiling"] = p.ceiling
        objects.append(
            {"apiVersion": api.API_VERSION, "kind": "ModelProfile", "metadata": meta, "spec": spec}
        )
    return objects


def _toleration_dict(t: Toleration) -> dict[str, Any]:
    found: dict[str, Any] = {"operator": t.operator}
    if t.key:
        found["key"] = t.key
    if t.value:
        found["value"] = t.value
    if t.effect:
        found["effect"] = t.effect
    return found


def _first_errors(exc: pydantic.ValidationError, limit: int = 3) -> str:
    parts = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:limit]]
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
