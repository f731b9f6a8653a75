"""What the placement engine sees: an immutable snapshot of nodes, accelerator classes, tenants and
profiles. Plain frozen dataclasses; building one from Kubernetes objects lives in `objects.py`.
Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


def _frozen(mapping: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping or {}))


class SharingMode(StrEnum):
    EXCLUSIVE = "Exclusive"
    TIME_SLICED = "TimeSliced"


class TaintEffect(StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    effect: str = TaintEffect.NO_SCHEDULE
    value: str = ""

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"


@dataclass(frozen=True, slots=True)
class Toleration:
    """A Kubernetes toleration; `operator` is "Equal" or "Exists", an empty effect matches every effect."""

    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""

    def tolerates(self, taint: Taint) -> bool:
        if self.effect and self.effect != taint.effect:
            return False
        if self.operator == "Exists":
            return not self.key or self.key == taint.key
        return self.key == taint.key and self.value == taint.value


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    labels: Mapping[str, str] = field(default_factory=_frozen)
    taints: tuple[Taint, ...] = ()
    # Extended-resource counts only (e.g. {"nvidia.com/gpu": 1}); CPU/memory are not placement inputs.
    allocatable: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    ready: bool = True


@dataclass(frozen=True, slots=True)
class AcceleratorClass:
    name: str
    resource_name: str  # "" for a CPU class: one device per matching node
    memory_per_device_mib: int
    formats: tuple[str, ...]
    node_selector: Mapping[str, str] = field(default_factory=_frozen)
    tolerations: tuple[Toleration, ...] = ()
    sharing: SharingMode = SharingMode.EXCLUSIVE
    slots: int = 1
    relative_speed: float | None = None

    @property
    def tenants_per_device(self) -> int:
        return self.slots if self.sharing is SharingMode.TIME_SLICED else 1


@dataclass(frozen=True, slots=True)
class ProfilePoint:
    concurrency: int
    throughput: float  # req/s with the device to itself; points at 0 are ignored (with a warning)
    p95_ms: float
    memory_mib: float | None = None  # None: not measured; the tenant's hint x concurrency stands in
    batch_size: int = 1


@dataclass(frozen=True, slots=True)
class Profile:
    """Measured behaviour of one model on one accelerator class (a ModelProfile)."""

    model: str
    accelerator_class: str
    points: tuple[ProfilePoint, ...]
    namespace: str = ""
    ceiling: int | None = None
    name: str = ""  # the ModelProfile's name: orders profiles of one (model, class) and names them

    @property
    def key(self) -> str:
        """`namespace/name` (a hand-built profile without a name: `model.class`)."""
        name = self.name or f"{self.model}.{self.accelerator_class}"
        return f"{self.namespace}/{name}" if self.namespace else name


@dataclass(frozen=True, slots=True)
class CurrentPlacement:
    node: str
    accelerator_class: str
    device: int = 0


@dataclass(frozen=True, slots=True)
class Tenant:
    key: str  # "namespace/name"
    model: str
    format: str
    demand: float  # expected req/s
    accelerator_classes: tuple[str, ...] = ()  # ordered preference; empty = any class supporting `format`
    node_selector: Mapping[str, str] = field(default_factory=_frozen)
    tolerations: tuple[Toleration, ...] = ()
    min_concurrency: int = 1
    max_concurrency: int = 8
    initial_concurrency: int = 1
    ceiling: int | None = None  # learned OOM / saturation point
    p95_slo_ms: float | None = None
    priority: float = 100.0
    memory_hint_mib: float | None = None
    current: CurrentPlacement | None = None
    allow_move: bool = True
    moves_in_last_hour: int = 0
    max_moves_per_hour: int = 4

    @property
    def namespace(self) -> str:
        return self.key.partition("/")[0]

    @property
    def may_move(self) -> bool:
        return self.allow_move and self.moves_in_last_hour < self.max_moves_per_hour


@dataclass(frozen=True, slots=True)
class PlanWarning:
    """Something the planner ignored or interpreted, and why. `tenant` (a tenant key) when it
    concerns one tenant; None when it concerns the input as a whole."""

    message: str
    tenant: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    nodes: tuple[Node, ...] = ()
    classes: tuple[AcceleratorClass, ...] = ()
    tenants: tuple[Tenant, ...] = ()
    profiles: tuple[Profile, ...] = ()
    # What reading the objects ignored or interpreted (wrong apiVersion, duplicates, ...).
    warnings: tuple[PlanWarning, ...] = ()
    # AcceleratorClasses that were given but ignored, name -> why, so reasons can name them.
    ignored_classes: tuple[tuple[str, str], ...] = ()
    # InferenceTenants that could not be read, key -> why: reported unplaced as planning errors.
    unreadable_tenants: tuple[tuple[str, str], ...] = ()
