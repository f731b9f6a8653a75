"""The reference model, compiled: devices offered by the snapshot, each tenant's feasible
(class, node, concurrency) choices with their numbers, and `evaluate`, the one objective every
solver, baseline and benchmark is scored by. Pure: no I/O, no clock.

The model (docs/placement.md has the long form):
  * a node offers n devices of a class: Exclusive -> allocatable[resource]; TimeSliced ->
    allocatable[resource] // slots, each holding up to `slots` tenants; a CPU class (resource "")
    offers one device per matching node. Every device has the class's memory.
  * tenant t on a device with tenants T at concurrencies c: u_t = demand_t / thr(t,k,c_t),
    U = sum u, served_t = demand_t * min(1, 1/U).
  * objective = sum priority_t * served_t - move_cost * (#tenants whose device differs from
    their current one; a tenant taken off its device counts as moved).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from edgetenant.placement.snapshot import (
    AcceleratorClass,
    Node,
    Profile,
    Snapshot,
    Taint,
    TaintEffect,
    Tenant,
    Toleration,
)

# Estimates used only when no ModelProfile exists (the plan marks them `estimated`).
# A typical mobile-class image model at concurrency 1 on one x86 CPU device (relativeSpeed 1.0).
REFERENCE_THROUGHPUT_RPS = 100.0
DEFAULT_MEMORY_MIB = 256.0  # per model instance, when the tenant gives no memoryHintMiB
CME_SATURATION = 0.5  # thr(c) = thr(1) * c / (1 + 0.5 (c - 1)): diminishing returns, at most 2x
P95_OVER_MEAN = 1.5  # estimated p95 = 1.5 * mean latency (Little's law: mean = c / thr)
DEFAULT_MOVE_COST = 100.0  # objective units (priority x req/s): one req/s at the default priority 100

_BLOCKING_EFFECTS = frozenset({TaintEffect.NO_SCHEDULE.value, TaintEffect.NO_EXECUTE.value})


@dataclass(frozen=True, slots=True, order=True)
class DeviceRef:
    node: str
    accelerator_class: str
    index: int

    def __str__(self) -> str:
        return f"{self.node}/{self.accelerator_class}/{self.index}"


@dataclass(frozen=True, slots=True)
class Device:
    ref: DeviceRef
    memory_mib: float
    slots: int


@dataclass(frozen=True, slots=True)
class Level:
    """A tenant's numbers on one class at one concurrency, with the device to itself."""

    concurrency: int
    throughput: float
    p95_ms: float
    memory_mib: float
    estimated: bool


@dataclass(frozen=True, slots=True)
class Choice:
    device: DeviceRef
    concurrency: int


# tenant key -> where it runs; a tenant absent from the mapping is unplaced.
Assignment = Mapping[str, Choice]


@dataclass(frozen=True, slots=True)
class ClassCandidates:
    accelerator_class: str
    rank: int  # position in the tenant's preference order (0 = most preferred)
    levels: tuple[Level, ...]  # every feasible concurrency, ascending
    devices: tuple[int, ...]  # indices into Problem.devices


@dataclass(frozen=True, slots=True)
class TenantCandidates:
    tenant: Tenant
    classes: tuple[ClassCandidates, ...]
    current: int | None  # device index of the current placement, if that device still exists
    pinned: bool  # may not move (allowMove=false or move budget spent) and can stay where it is
    rejections: tuple[str, ...]  # why classes or nodes were ruled out, for unplaced reasons
    levels_by_class: Mapping[str, Mapping[int, Level]] = field(default_factory=dict)

    def options(self) -> Iterable[tuple[ClassCandidates, int, Level]]:
        """Every (class, device index, level) the tenant may take, in tie-break order."""
        for cc in self.classes:
            for d in cc.devices:
                if self.pinned and d != self.current:
                    continue
                for level in cc.levels:
                    yield cc, d, level


@dataclass(frozen=True, slots=True)
class Problem:
    snapshot: Snapshot
    devices: tuple[Device, ...]
    device_index: Mapping[DeviceRef, int]
    tenants: tuple[TenantCandidates, ...]  # sorted by tenant key
    tenant_index: Mapping[str, int]
    move_cost: float

    def level(self, key: str, choice: Choice) -> Level | None:
        return (
            self.tenants[self.tenant_index[key]]
            .levels_by_class.get(choice.device.accelerator_class, {})
            .get(choice.concurrency)
        )


# ---------------------------------------------------------------------------------------------
# Devices and compatibility


def devices_of(node: Node, cls: AcceleratorClass) -> int:
    """How many devices of `cls` the node offers (0 when it does not match the class)."""
    if not node.ready or not _selects(cls.node_selector, node.labels):
        return 0
    if not cls.resource_name:
        return 1
    count = node.allocatable.get(cls.resource_name, 0)
    return count // cls.slots if cls.tenants_per_device > 1 else count


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def untolerated(taints: Iterable[Taint], tolerations: Sequence[Toleration]) -> list[Taint]:
    return [
        t for t in taints if t.effect in _BLOCKING_EFFECTS and not any(x.tolerates(t) for x in tolerations)
    ]


# ---------------------------------------------------------------------------------------------
# Levels: profile points or estimates


def _allowed_concurrency(tenant: Tenant, profile_ceiling: int | None) -> tuple[int, int]:
    hi = tenant.max_concurrency
    for ceiling in (tenant.ceiling, profile_ceiling):
        if ceiling is not None:
            hi = min(hi, ceiling)
    return tenant.min_concurrency, hi


def _profile_levels(tenant: Tenant, profile: Profile) -> list[Level]:
    # Several batch sizes may share a concurrency: the batch size belongs to tuning, so placement
    # assumes the best one that meets the SLO.
    best: dict[int, Level] = {}
    for p in profile.points:
        if tenant.p95_slo_ms is not None and p.p95_ms > tenant.p95_slo_ms:
            continue
        if p.memory_mib >= 0:
            level = Level(p.concurrency, p.throughput, p.p95_ms, p.memory_mib, estimated=False)
        else:  # a point measured without memory: the hint (or default) per instance stands in
            memory = (tenant.memory_hint_mib or DEFAULT_MEMORY_MIB) * p.concurrency
            level = Level(p.concurrency, p.throughput, p.p95_ms, memory, estimated=True)
        old = best.get(p.concurrency)
        if old is None or (level.throughput, -level.memory_mib) > (old.throughput, -old.memory_mib):
            best[p.concurrency] = level
    return [best[c] for c in sorted(best)]


def _estimated_concurrencies(lo: int, hi: int) -> list[int]:
    values = {lo, hi} | {2**i for i in range(8) if lo <= 2**i <= hi}
    return sorted(v for v in values if lo <= v <= hi)


def _estimated_levels(
    tenant: Tenant, cls: AcceleratorClass, lo: int, hi: int, base: tuple[Profile, AcceleratorClass] | None
) -> list[Level]:
    levels: list[Level] = []
    if base is not None:
        # Scale a profile measured on another class by the ratio of relative speeds.
        profile, other = base
        ratio = (cls.relative_speed or 1.0) / (other.relative_speed or 1.0)
        for p in sorted(profile.points, key=lambda p: (p.concurrency, -p.throughput)):
            if lo <= p.concurrency <= hi and all(x.concurrency != p.concurrency for x in levels):
                memory = (
                    p.memory_mib
                    if p.memory_mib >= 0
                    else (tenant.memory_hint_mib or DEFAULT_MEMORY_MIB) * p.concurrency
                )
                levels.append(Level(p.concurrency, p.throughput * ratio, p.p95_ms / ratio, memory, True))
    else:
        thr1 = REFERENCE_THROUGHPUT_RPS * (cls.relative_speed or 1.0)
        memory = tenant.memory_hint_mib or DEFAULT_MEMORY_MIB
        for c in _estimated_concurrencies(lo, hi):
            thr = thr1 * c / (1 + CME_SATURATION * (c - 1))
            levels.append(Level(c, thr, P95_OVER_MEAN * 1000.0 * c / thr, memory * c, True))
    slo = tenant.p95_slo_ms
    return [lv for lv in levels if slo is None or lv.p95_ms <= slo]


# ---------------------------------------------------------------------------------------------
# Compile


def _profile_lookup(snapshot: Snapshot) -> dict[tuple[str, str, str], Profile]:
    """(namespace, model, class) -> profile; namespace "" holds the first profile from any namespace."""
    found: dict[tuple[str, str, str], Profile] = {}
    for p in sorted(snapshot.profiles, key=lambda p: (p.namespace, p.model, p.accelerator_class)):
        found.setdefault((p.namespace, p.model, p.accelerator_class), p)
        found.setdefault(("", p.model, p.accelerator_class), p)
    return found


def _fmt_mib(value: float) -> str:
    return f"{value:.0f} MiB"


def compile_problem(snapshot: Snapshot, *, move_cost: float = DEFAULT_MOVE_COST) -> Problem:
    classes = {c.name: c for c in snapshot.classes}
    nodes = sorted(snapshot.nodes, key=lambda n: n.name)

    devices: list[Device] = []
    devices_by_class_node: dict[tuple[str, str], list[int]] = {}
    for cls in sorted(snapshot.classes, key=lambda c: c.name):
        for node in nodes:
            for i in range(devices_of(node, cls)):
                devices_by_class_node.setdefault((cls.name, node.name), []).append(len(devices))
                devices.append(
                    Device(
                        DeviceRef(node.name, cls.name, i), cls.memory_per_device_mib, cls.tenants_per_device
                    )
                )
    device_index = {d.ref: i for i, d in enumerate(devices)}
    profiles = _profile_lookup(snapshot)
    node_memo: dict[tuple[object, ...], tuple[tuple[int, ...], tuple[str, ...]]] = {}

    def compatible_devices(tenant: Tenant, cls: AcceleratorClass) -> tuple[tuple[int, ...], tuple[str, ...]]:
        memo_key = (cls.name, tuple(sorted(tenant.node_selector.items())), tenant.tolerations)
        if memo_key not in node_memo:
            node_memo[memo_key] = _compatible_devices(tenant, cls, nodes, devices_by_class_node)
        return node_memo[memo_key]

    tenants: list[TenantCandidates] = []
    for tenant in sorted(snapshot.tenants, key=lambda t: t.key):
        # No preference given: fastest class first (relativeSpeed), then by name.
        wanted = tenant.accelerator_classes or tuple(
            c.name
            for c in sorted(snapshot.classes, key=lambda c: (-(c.relative_speed or 1.0), c.name))
            if tenant.format in c.formats
        )
        rejections: list[str] = []
        if not wanted:
            rejections.append(f"no AcceleratorClass supports format {tenant.format}")
        found: list[ClassCandidates] = []
        levels_by_class: dict[str, dict[int, Level]] = {}
        for rank, name in enumerate(wanted):
            klass = classes.get(name)
            if klass is None:
                rejections.append(f"AcceleratorClass {name} does not exist")
                continue
            if tenant.format not in klass.formats:
                rejections.append(f"AcceleratorClass {name} does not support format {tenant.format}")
                continue
            levels, why = _levels_for(tenant, klass, classes, profiles)
            rejections.extend(why)
            if not levels:
                continue
            device_ids, why_nodes = compatible_devices(tenant, klass)
            rejections.extend(why_nodes)
            levels_by_class[name] = {lv.concurrency: lv for lv in levels}
            if device_ids:
                found.append(ClassCandidates(name, rank, tuple(levels), device_ids))
        current = None
        if tenant.current is not None:
            ref = DeviceRef(tenant.current.node, tenant.current.accelerator_class, tenant.current.device)
            current = device_index.get(ref)
        can_stay = current is not None and any(current in cc.devices for cc in found)
        tenants.append(
            TenantCandidates(
                tenant=tenant,
                classes=tuple(found),
                current=current,
                pinned=can_stay and not tenant.may_move,
                rejections=tuple(dict.fromkeys(rejections)),
                levels_by_class=levels_by_class,
            )
        )
    return Problem(
        snapshot=snapshot,
        devices=tuple(devices),
        device_index=device_index,
        tenants=tuple(tenants),
        tenant_index={tc.tenant.key: i for i, tc in enumerate(tenants)},
        move_cost=move_cost,
    )


def _levels_for(
    tenant: Tenant,
    cls: AcceleratorClass,
    classes: Mapping[str, AcceleratorClass],
    profiles: Mapping[tuple[str, str, str], Profile],
) -> tuple[list[Level], list[str]]:
    profile = profiles.get((tenant.namespace, tenant.model, cls.name)) or profiles.get(
        ("", tenant.model, cls.name)
    )
    lo, hi = _allowed_concurrency(tenant, profile.ceiling if profile else None)
    if lo > hi:
        return [], [f"concurrency min {lo} is above the ceiling {hi} on {cls.name}"]
    levels: list[Level] = []
    if profile is not None:
        levels = [lv for lv in _profile_levels(tenant, profile) if lo <= lv.concurrency <= hi]
        if not levels and not [p for p in profile.points if lo <= p.concurrency <= hi]:
            profile = None  # measured only outside the allowed range: estimate instead
        elif not levels:
            fastest = min(p.p95_ms for p in profile.points if lo <= p.concurrency <= hi)
            return [], [
                f"p95 on {cls.name} is at least {fastest:.0f} ms, above the SLO of {tenant.p95_slo_ms:.0f} ms"
            ]
    if profile is None:
        base = None
        for other in sorted(classes.values(), key=lambda c: c.name):
            p = profiles.get((tenant.namespace, tenant.model, other.name)) or profiles.get(
                ("", tenant.model, other.name)
            )
            if p is not None and other.name != cls.name and other.relative_speed and cls.relative_speed:
                base = (p, other)
                break
        levels = _estimated_levels(tenant, cls, lo, hi, base)
        if not levels:
            return [], [f"estimated p95 on {cls.name} is above the SLO of {tenant.p95_slo_ms:.0f} ms"]
    fitting = [lv for lv in levels if lv.memory_mib <= cls.memory_per_device_mib]
    if not fitting:
        need = min(lv.memory_mib for lv in levels)
        return [], [f"needs {_fmt_mib(need)}, a {cls.name} device has {_fmt_mib(cls.memory_per_device_mib)}"]
    return fitting, []


def _compatible_devices(
    tenant: Tenant,
    cls: AcceleratorClass,
    nodes: Sequence[Node],
    devices_by_class_node: Mapping[tuple[str, str], list[int]],
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    tolerations = (*tenant.tolerations, *cls.tolerations)
    found: list[int] = []
    selected = tainted = 0
    blocking: dict[str, None] = {}
    for node in nodes:
        if not _selects(cls.node_selector, node.labels) or not _selects(tenant.node_selector, node.labels):
            continue
        selected += 1
        bad = untolerated(node.taints, tolerations)
        if bad:
            tainted += 1
            blocking.update((str(t), None) for t in bad)
            continue
        found.extend(devices_by_class_node.get((cls.name, node.name), []))
    if found:
        return tuple(found), ()
    selector = {**cls.node_selector, **tenant.node_selector}
    if selected == 0:
        return (), (f"no node matches the nodeSelector {selector} of {cls.name}",)
    if tainted == selected:
        return (), (f"no node tolerates taint {', '.join(blocking)} (class {cls.name})",)
    resource = cls.resource_name or "cpu"
    return (), (f"no Ready node offers an allocatable {resource} device for {cls.name}",)


# ---------------------------------------------------------------------------------------------
# The objective


def served_on_device(demands_and_throughputs: Sequence[tuple[float, float]]) -> list[float]:
    """Served req/s of each tenant sharing one device: demand * min(1, 1/U), U = sum demand/thr."""
    utilisation = sum(d / thr for d, thr in demands_and_throughputs)
    share = 1.0 if utilisation <= 1.0 else 1.0 / utilisation
    return [d * share for d, _ in demands_and_throughputs]


def violations(problem: Problem, assignment: Assignment) -> list[str]:
    """Every way `assignment` breaks the model (empty when feasible)."""
    problems: list[str] = []
    memory: dict[int, float] = {}
    count: dict[int, int] = {}
    for key, choice in assignment.items():
        if key not in problem.tenant_index:
            problems.append(f"{key}: unknown tenant")
            continue
        tc = problem.tenants[problem.tenant_index[key]]
        d = problem.device_index.get(choice.device)
        level = problem.level(key, choice)
        if d is None:
            problems.append(f"{key}: no device {choice.device}")
            continue
        if level is None or not any(d in cc.devices for cc in tc.classes):
            problems.append(f"{key}: {choice.device} at concurrency {choice.concurrency} is not compatible")
            continue
        if tc.pinned and d != tc.current:
            problems.append(f"{key}: may not move")
        memory[d] = memory.get(d, 0.0) + level.memory_mib
        count[d] = count.get(d, 0) + 1
    for d, used in memory.items():
        device = problem.devices[d]
        if used > device.memory_mib + 1e-9:
            problems.append(f"{device.ref}: {used:.0f} MiB over {device.memory_mib:.0f} MiB")
        if count[d] > device.slots:
            problems.append(f"{device.ref}: {count[d]} tenants over {device.slots} slots")
    return problems


def served(problem: Problem, assignment: Assignment) -> dict[str, float]:
    """Served req/s per placed tenant under the sharing rule."""
    by_device: dict[DeviceRef, list[tuple[str, float, float]]] = {}
    for key, choice in assignment.items():
        level = problem.level(key, choice)
        if level is None:
            raise ValueError(f"{key}: {choice} is not a feasible choice")
        demand = problem.tenants[problem.tenant_index[key]].tenant.demand
        by_device.setdefault(choice.device, []).append((key, demand, level.throughput))
    result: dict[str, float] = {}
    for members in by_device.values():
        shares = served_on_device([(dem, thr) for _, dem, thr in members])
        result.update((key, s) for (key, _, _), s in zip(members, shares, strict=True))
    return result


def moved(problem: Problem, assignment: Assignment) -> list[str]:
    """Tenants whose device differs from their current one (taken off a device counts too)."""
    result = []
    for tc in problem.tenants:
        current = tc.tenant.current
        if current is None:
            continue
        choice = assignment.get(tc.tenant.key)
        here = DeviceRef(current.node, current.accelerator_class, current.device)
        if choice is None or choice.device != here:
            result.append(tc.tenant.key)
    return result


def evaluate(problem: Problem | Snapshot, assignment: Assignment) -> float:
    """The reference objective of a feasible assignment; raises ValueError when infeasible."""
    if isinstance(problem, Snapshot):
        problem = compile_problem(problem)
    wrong = violations(problem, assignment)
    if wrong:
        raise ValueError("infeasible assignment: " + "; ".join(wrong))
    value = sum(
        problem.tenants[problem.tenant_index[key]].tenant.priority * s
        for key, s in served(problem, assignment).items()
    )
    return value - problem.move_cost * len(moved(problem, assignment))


def upper_bound(problem: Problem) -> float:
    """An objective no plan can beat: every placeable tenant fully served, and only the moves
    that cannot be avoided (a tenant whose current device is gone or no longer fits it)."""
    value = 0.0
    for tc in problem.tenants:
        if tc.classes:
            value += tc.tenant.priority * tc.tenant.demand
        if tc.tenant.current is not None and not any(tc.current in cc.devices for cc in tc.classes):
            value -= problem.move_cost
    return value
