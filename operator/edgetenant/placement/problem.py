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

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from edgetenant.placement.snapshot import (
    AcceleratorClass,
    Node,
    PlanWarning,
    Profile,
    ProfilePoint,
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
    warnings: tuple[str, ...] = ()  # what was ignored or estimated for this tenant, and why
    error: str | None = None  # compiling it failed unexpectedly (a bug): it is left out, said so

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
    warnings: tuple[PlanWarning, ...] = ()  # the snapshot's and compiling's, global and per tenant

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
    return count // max(1, cls.slots) if cls.tenants_per_device > 1 else count


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def untolerated(taints: Iterable[Taint], tolerations: Sequence[Toleration]) -> list[Taint]:
    return [
        t for t in taints if t.effect in _BLOCKING_EFFECTS and not any(x.tolerates(t) for x in tolerations)
    ]


# ---------------------------------------------------------------------------------------------
# Levels: profile points or estimates (docs/placement.md section 3 is the specification)


@dataclass(frozen=True, slots=True)
class _Numbers:
    """One candidate at one concurrency: a profile point, a scaled point or the reference formula."""

    concurrency: int
    throughput: float
    p95_ms: float
    memory_mib: float
    estimated: bool
    batch_size: int = 1


class _Profiles:
    """ModelProfiles by (model, class), each list in (namespace, name) order, and what is wrong
    with each one (said once per tenant that reads it)."""

    def __init__(self, profiles: Iterable[Profile]) -> None:
        self.by_model_class: dict[tuple[str, str], list[Profile]] = {}
        for p in sorted(profiles, key=lambda p: (p.namespace, p.name)):
            self.by_model_class.setdefault((p.model, p.accelerator_class), []).append(p)
        self._defects: dict[int, tuple[str, ...]] = {}

    def of(self, tenant: Tenant, class_name: str) -> tuple[Profile | None, list[Profile]]:
        """The profile of the tenant's model on the class (one in its namespace wins, else the
        first by namespace and name), and the others of the same model and class, passed over."""
        found = self.by_model_class.get((tenant.model, class_name), [])
        if not found:
            return None, []
        chosen = next((p for p in found if p.namespace == tenant.namespace), found[0])
        return chosen, [p for p in found if p is not chosen]

    def unread_defects(self) -> list[str]:
        """What is wrong with the profiles no tenant's numbers read (said once, for the input)."""
        return [
            message
            for profiles in self.by_model_class.values()
            for p in profiles
            if id(p) not in self._defects
            for message in self.defects(p)
        ]

    def defects(self, profile: Profile) -> tuple[str, ...]:
        found = self._defects.get(id(profile))
        if found is None:
            bad = [p for p in profile.points if not usable_point(p)]
            found = ()
            if bad:
                where = ", ".join(f"concurrency {p.concurrency} batch {p.batch_size}" for p in bad[:4])
                more = f" and {len(bad) - 4} more" if len(bad) > 4 else ""
                found = (
                    f"ModelProfile {profile.key}: {len(bad)} point(s) with throughput 0 (or a value that "
                    f"is not a finite number) ignored: {where}{more}",
                )
            self._defects[id(profile)] = found
        return found


def usable_point(p: ProfilePoint) -> bool:
    """A point the model can use: positive finite throughput, finite p95 and memory."""
    return (
        p.throughput > 0
        and math.isfinite(p.throughput)
        and math.isfinite(p.p95_ms)
        and (p.memory_mib is None or math.isfinite(p.memory_mib))
    )


def _in_range(profile: Profile, lo: int, hi: int) -> list[ProfilePoint]:
    return [p for p in profile.points if usable_point(p) and lo <= p.concurrency <= hi]


def _point_memory(tenant: Tenant, p: ProfilePoint) -> tuple[float, bool]:
    """(memory, estimated): measured, or the hint (default 256 MiB) per instance."""
    if p.memory_mib is not None:
        return p.memory_mib, False
    return (tenant.memory_hint_mib or DEFAULT_MEMORY_MIB) * p.concurrency, True


def estimated_concurrencies(lo: int, hi: int) -> list[int]:
    """Candidate concurrencies of the reference estimate: lo, hi and the powers of two between."""
    values = {lo, hi} | {2**i for i in range(8) if lo <= 2**i <= hi}
    return sorted(v for v in values if lo <= v <= hi)


def _reference_numbers(tenant: Tenant, cls: AcceleratorClass, lo: int, hi: int) -> list[_Numbers]:
    thr1 = REFERENCE_THROUGHPUT_RPS * (cls.relative_speed or 1.0)
    memory = tenant.memory_hint_mib or DEFAULT_MEMORY_MIB
    numbers = []
    for c in estimated_concurrencies(lo, hi):
        thr = thr1 * c / (1 + CME_SATURATION * (c - 1))
        numbers.append(_Numbers(c, thr, P95_OVER_MEAN * 1000.0 * c / thr, memory * c, estimated=True))
    return numbers


def speed_distance(a: float, b: float) -> float:
    """How far apart two relative speeds are: |ln(a/b)|, rounded so float noise never decides."""
    return round(abs(math.log(a / b)), 9)


def _base_profile(
    tenant: Tenant,
    *,
    cls: AcceleratorClass,
    classes: Sequence[AcceleratorClass],
    profiles: _Profiles,
    lo: int,
    hi: int,
) -> tuple[Profile, AcceleratorClass] | None:
    """The other class whose profile a cross-class estimate scales: it and `cls` have a
    relativeSpeed, the tenant's profile there has a usable point in [lo, hi]; the nearest speed
    wins, then the class name."""
    if not cls.relative_speed:
        return None
    best: tuple[tuple[float, str], Profile, AcceleratorClass] | None = None
    for other in classes:
        if other.name == cls.name or not other.relative_speed:
            continue
        profile, _ = profiles.of(tenant, other.name)
        if profile is None or not _in_range(profile, lo, hi):
            continue
        rank = (speed_distance(cls.relative_speed, other.relative_speed), other.name)
        if best is None or rank < best[0]:
            best = (rank, profile, other)
    return None if best is None else (best[1], best[2])


def _pick(numbers: Sequence[_Numbers], slo: float | None, device_memory: float) -> list[Level]:
    """Per concurrency, the candidate with the highest throughput among those that meet the SLO
    and fit the device (ties: less memory, then the smaller batch size)."""
    best: dict[int, _Numbers] = {}
    for n in numbers:
        if (slo is not None and n.p95_ms > slo) or n.memory_mib > device_memory:
            continue
        old = best.get(n.concurrency)
        if old is None or (n.throughput, -n.memory_mib, -n.batch_size) > (
            old.throughput,
            -old.memory_mib,
            -old.batch_size,
        ):
            best[n.concurrency] = n
    return [
        Level(c, best[c].throughput, best[c].p95_ms, best[c].memory_mib, best[c].estimated)
        for c in sorted(best)
    ]


def _fmt_ms(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _fmt_mib(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0") + " MiB"


def _concurrency_range(tenant: Tenant, cls: AcceleratorClass, own: Profile | None) -> tuple[int, int, str]:
    """(lo, hi, why the range is empty or ""). A ceiling is the lowest count that failed (ran out of
    memory, or failed requests), as the tuning loop records it: the allowed counts stay below it."""
    lo, hi = tenant.min_concurrency, tenant.max_concurrency
    if lo > hi:
        return lo, hi, f"concurrency min {lo} is above max {hi}"
    if tenant.ceiling is not None and tenant.ceiling - 1 < hi:
        hi = tenant.ceiling - 1
        if lo > hi:
            return (
                lo,
                hi,
                f"concurrency min {lo} is not below the learned ceiling {tenant.ceiling} "
                "(status.concurrency.ceiling: the lowest count that failed)",
            )
    if own is not None and own.ceiling is not None and own.ceiling - 1 < hi:
        hi = own.ceiling - 1
        if lo > hi:
            return (
                lo,
                hi,
                f"concurrency min {lo} is not below the ceiling {own.ceiling} of ModelProfile {own.key} "
                f"on {cls.name}",
            )
    return lo, hi, ""


def levels_for(
    tenant: Tenant,
    cls: AcceleratorClass,
    classes: Sequence[AcceleratorClass],
    profiles: _Profiles,
) -> tuple[list[Level], str, list[str]]:
    """(levels, why there are none or "", warnings) of a tenant on a class: docs/placement.md §3."""
    notes: list[str] = []
    own, passed_over = profiles.of(tenant, cls.name)
    if own is not None and passed_over:
        notes.append(
            f"ModelProfile {own.key} is used for model {tenant.model} on {cls.name}; "
            f"{', '.join(p.key for p in passed_over)} ignored"
        )
    lo, hi, why = _concurrency_range(tenant, cls, own)
    if why:
        return [], why, notes
    numbers: list[_Numbers] = []
    if own is not None:
        notes.extend(profiles.defects(own))
        for p in _in_range(own, lo, hi):
            memory, estimated = _point_memory(tenant, p)
            numbers.append(_Numbers(p.concurrency, p.throughput, p.p95_ms, memory, estimated, p.batch_size))
    if not numbers:
        base = _base_profile(tenant, cls=cls, classes=classes, profiles=profiles, lo=lo, hi=hi)
        if base is not None:
            profile, other = base
            notes.extend(profiles.defects(profile))
            ratio = (cls.relative_speed or 1.0) / (other.relative_speed or 1.0)
            for p in _in_range(profile, lo, hi):
                memory, _ = _point_memory(tenant, p)
                numbers.append(
                    _Numbers(
                        p.concurrency, p.throughput * ratio, p.p95_ms / ratio, memory, True, p.batch_size
                    )
                )
            basis = f"ModelProfile {profile.key} on {other.name} scaled by relativeSpeed"
        else:
            numbers = _reference_numbers(tenant, cls, lo, hi)
            basis = "the reference formula"
        if own is not None:
            notes.append(
                f"ModelProfile {own.key} has no usable point at concurrency {lo}..{hi}: "
                f"{cls.name} estimated from {basis}"
            )
    slo = tenant.p95_slo_ms
    levels = _pick(numbers, slo, cls.memory_per_device_mib)
    if levels:
        return levels, "", notes
    meets = [n for n in numbers if slo is None or n.p95_ms <= slo]
    if slo is not None and not meets:
        fastest = min(n.p95_ms for n in numbers)
        basis = " (estimated)" if all(n.estimated for n in numbers) else ""
        why = (
            f"p95 on {cls.name} is at least {_fmt_ms(fastest)} ms{basis}, above the SLO of {_fmt_ms(slo)} ms"
        )
        return [], why, notes
    need = min(n.memory_mib for n in meets)
    return [], f"needs {_fmt_mib(need)}, a {cls.name} device has {_fmt_mib(cls.memory_per_device_mib)}", notes


# ---------------------------------------------------------------------------------------------
# Compile


def compile_problem(snapshot: Snapshot, *, move_cost: float = DEFAULT_MOVE_COST) -> Problem:
    """The snapshot as a Problem. Never raises because of one tenant: an unexpected error while
    compiling a tenant leaves that tenant out with `error` set (a planning error), the rest go on."""
    warnings: list[PlanWarning] = list(snapshot.warnings)
    nodes = _unique(snapshot.nodes, lambda n: n.name, "Node", warnings)
    class_list = _unique(snapshot.classes, lambda c: c.name, "AcceleratorClass", warnings)
    tenant_list = _unique(snapshot.tenants, lambda t: t.key, "InferenceTenant", warnings)
    if not tenant_list and not snapshot.unreadable_tenants:
        warnings.append(PlanWarning("no InferenceTenants in the input: nothing to place"))
    elif not nodes:
        warnings.append(PlanWarning("no Nodes in the input: no device to place on"))
    elif not class_list:
        warnings.append(PlanWarning("no AcceleratorClasses in the input: no device to place on"))
    classes = {c.name: c for c in class_list}
    ignored = dict(snapshot.ignored_classes)

    devices: list[Device] = []
    devices_by_class_node: dict[tuple[str, str], list[int]] = {}
    for cls in class_list:
        for node in nodes:
            for i in range(devices_of(node, cls)):
                devices_by_class_node.setdefault((cls.name, node.name), []).append(len(devices))
                devices.append(
                    Device(
                        DeviceRef(node.name, cls.name, i), cls.memory_per_device_mib, cls.tenants_per_device
                    )
                )
    device_index = {d.ref: i for i, d in enumerate(devices)}
    profiles = _Profiles(snapshot.profiles)
    # No preference given: fastest class first (relativeSpeed), then by name.
    by_speed = sorted(class_list, key=lambda c: (-(c.relative_speed or 1.0), c.name))
    node_memo: dict[tuple[object, ...], tuple[tuple[int, ...], tuple[str, ...]]] = {}
    node_index = _NodeIndex(nodes)

    def compatible_devices(tenant: Tenant, cls: AcceleratorClass) -> tuple[tuple[int, ...], tuple[str, ...]]:
        memo_key = (cls.name, tuple(sorted(tenant.node_selector.items())), tenant.tolerations)
        if memo_key not in node_memo:
            node_memo[memo_key] = _compatible_devices(tenant, cls, node_index, devices_by_class_node)
        return node_memo[memo_key]

    def compile_tenant(tenant: Tenant) -> TenantCandidates:
        wanted = tuple(dict.fromkeys(tenant.accelerator_classes)) or tuple(
            c.name for c in by_speed if tenant.format in c.formats
        )
        rejections: list[str] = []
        notes: list[str] = []
        if not wanted:
            rejections.append(f"no AcceleratorClass supports format {tenant.format}")
            rejections.extend(f"AcceleratorClass {name} was ignored: {why}" for name, why in ignored.items())
        found: list[ClassCandidates] = []
        levels_by_class: dict[str, dict[int, Level]] = {}
        for rank, name in enumerate(wanted):
            klass = classes.get(name)
            if klass is None:
                rejections.append(
                    f"AcceleratorClass {name} was ignored: {ignored[name]}"
                    if name in ignored
                    else f"AcceleratorClass {name} does not exist"
                )
                continue
            if tenant.format not in klass.formats:
                rejections.append(f"AcceleratorClass {name} does not support format {tenant.format}")
                continue
            levels, why, class_notes = levels_for(tenant, klass, class_list, profiles)
            notes.extend(class_notes)
            if not levels:
                rejections.append(why)
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
        return TenantCandidates(
            tenant=tenant,
            classes=tuple(found),
            current=current,
            pinned=can_stay and not tenant.may_move,
            rejections=tuple(dict.fromkeys(rejections)),
            levels_by_class=levels_by_class,
            warnings=tuple(dict.fromkeys(notes)),
        )

    tenants: list[TenantCandidates] = []
    for tenant in tenant_list:
        try:
            tc = compile_tenant(tenant)
        except Exception as exc:  # a bug must cost one tenant its plan, not everyone
            tc = TenantCandidates(tenant, (), None, False, (), error=planning_error(exc))
        tenants.append(tc)
        warnings.extend(PlanWarning(note, tenant.key) for note in tc.warnings)
    warnings.extend(PlanWarning(message) for message in profiles.unread_defects())
    return Problem(
        snapshot=snapshot,
        devices=tuple(devices),
        device_index=device_index,
        tenants=tuple(tenants),
        tenant_index={tc.tenant.key: i for i, tc in enumerate(tenants)},
        move_cost=move_cost,
        warnings=tuple(dict.fromkeys(warnings)),
    )


def planning_error(exc: BaseException) -> str:
    """The reason given to a tenant whose planning failed unexpectedly (a bug, never its input)."""
    return f"internal planning error (please report it): {type(exc).__name__}: {exc}"


_T = TypeVar("_T")


def _unique(
    items: Iterable[_T], key: Callable[[_T], str], kind: str, warnings: list[PlanWarning]
) -> list[_T]:
    """Items sorted by key, a repeated key keeping its last item (as objects given twice do)."""
    found: dict[str, _T] = {}
    for item in items:
        name = key(item)
        if name in found:
            warnings.append(PlanWarning(f"{kind} {name} is given twice: the last one is used"))
        found[name] = item
    return [found[k] for k in sorted(found)]


class _NodeIndex:
    """Nodes (sorted by name) with a posting list per label, so that selecting the nodes of one
    selector costs the nodes that carry its rarest label, not every node in the cluster."""

    def __init__(self, nodes: Sequence[Node]) -> None:
        self.nodes = nodes
        self.by_label: dict[tuple[str, str], list[int]] = {}
        for i, node in enumerate(nodes):
            for label in node.labels.items():
                self.by_label.setdefault(label, []).append(i)

    def select(self, selector: Mapping[str, str]) -> list[Node]:
        if not selector:
            return list(self.nodes)
        shortest = min((self.by_label.get(label, []) for label in selector.items()), key=len)
        return [self.nodes[i] for i in shortest if _selects(selector, self.nodes[i].labels)]


def _compatible_devices(
    tenant: Tenant,
    cls: AcceleratorClass,
    nodes: _NodeIndex,
    devices_by_class_node: Mapping[tuple[str, str], list[int]],
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    tolerations = (*tenant.tolerations, *cls.tolerations)
    found: list[int] = []
    selected = tainted = 0
    blocking: dict[str, None] = {}
    both = {**cls.node_selector, **tenant.node_selector}
    conflict = any(cls.node_selector.get(k, v) != v for k, v in tenant.node_selector.items())
    for node in () if conflict else nodes.select(both):
        selected += 1
        bad = untolerated(node.taints, tolerations)
        if bad:
            tainted += 1
            blocking.update((str(t), None) for t in bad)
            continue
        found.extend(devices_by_class_node.get((cls.name, node.name), []))
    if found:
        return tuple(found), ()
    if selected == 0:
        return (), (f"no node matches the nodeSelector {both} of {cls.name}",)
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
