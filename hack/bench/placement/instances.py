"""Instances for the placement benchmarks: the lab topology with a paper-like tenant mix, random
small clusters (for the exhaustive-search comparison) and large synthetic clusters (speed/scale).

Throughput figures (req/s, batch 1, one model instance, the device to itself) are rounded,
order-of-magnitude numbers assembled from public sources, not measurements from this repository:
NVIDIA's Jetson Nano launch benchmarks (ResNet-50 ~36 FPS, MobileNet-v2 ~64 FPS, TensorRT FP16) and
Jetson TX2 figures of the same kind, coral.ai's Edge TPU benchmark table (MobileNet v1/v2 a few ms,
Inception v3 and ResNet-50 tens of ms per inference), Intel's NCS2/OpenVINO figures (ResNet-50
~17-20 FPS) and common ONNX Runtime CPU figures for a 4-core x86 NUC and a Raspberry Pi 4.
Concurrency scales throughput as thr(c) = thr(1) c / (1 + a (c - 1)), with a per device family
(GPUs gain most, ~3x at c=8, as the CME studies report for the TX2); p95 = 1.3 x 1000 c / thr(c);
memory = instance memory x c.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

from edgetenant.placement import (
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
    snapshot_from_objects,
)
from edgetenant.placement.cli import read_files

REPO = Path(__file__).resolve().parents[3]
MODELS = ("mobilenet-v1", "mobilenet-v2", "resnet-18", "resnet-50", "inception-v3", "efficientnet-b0")

# class -> model -> single-instance req/s
THROUGHPUT: dict[str, dict[str, float]] = {
    "jetson-tx2": {
        "mobilenet-v1": 250,
        "mobilenet-v2": 200,
        "resnet-18": 180,
        "resnet-50": 70,
        "inception-v3": 45,
        "efficientnet-b0": 110,
    },
    "jetson-nano": {
        "mobilenet-v1": 90,
        "mobilenet-v2": 64,
        "resnet-18": 60,
        "resnet-50": 36,
        "inception-v3": 20,
        "efficientnet-b0": 40,
    },
    "coral-edgetpu": {
        "mobilenet-v1": 250,
        "mobilenet-v2": 230,
        "resnet-18": 80,
        "resnet-50": 18,
        "inception-v3": 15,
        "efficientnet-b0": 140,
    },
    "intel-ncs2": {
        "mobilenet-v1": 60,
        "mobilenet-v2": 45,
        "resnet-18": 40,
        "resnet-50": 17,
        "inception-v3": 10,
        "efficientnet-b0": 30,
    },
    "x86-cpu": {
        "mobilenet-v1": 220,
        "mobilenet-v2": 180,
        "resnet-18": 90,
        "resnet-50": 30,
        "inception-v3": 20,
        "efficientnet-b0": 110,
    },
    "arm64-cpu": {
        "mobilenet-v1": 20,
        "mobilenet-v2": 16,
        "resnet-18": 8,
        "resnet-50": 2.5,
        "inception-v3": 2,
        "efficientnet-b0": 9,
    },
}
SATURATION = {
    "jetson-tx2": 0.22,
    "jetson-nano": 0.25,
    "coral-edgetpu": 0.6,
    "intel-ncs2": 0.6,
    "x86-cpu": 0.4,
    "arm64-cpu": 0.5,
}
# MiB per instance (host memory for the Coral pod; on-stick memory for the NCS2)
MEMORY = {
    "mobilenet-v1": 120,
    "mobilenet-v2": 110,
    "resnet-18": 180,
    "resnet-50": 300,
    "inception-v3": 320,
    "efficientnet-b0": 130,
}
NCS2_MEMORY = {
    "mobilenet-v1": 60,
    "mobilenet-v2": 60,
    "resnet-18": 90,
    "resnet-50": 160,
    "inception-v3": 180,
    "efficientnet-b0": 80,
}
TFLITE_MODELS = ("mobilenet-v1", "mobilenet-v2", "efficientnet-b0", "inception-v3", "resnet-50")


def points(
    model: str, cls: str, concurrencies: tuple[int, ...], scale: float = 1.0
) -> tuple[ProfilePoint, ...]:
    thr1 = THROUGHPUT[cls][model] * scale
    a = SATURATION[cls]
    memory = NCS2_MEMORY[model] if cls == "intel-ncs2" else MEMORY[model]
    result = []
    for c in concurrencies:
        thr = thr1 * c / (1 + a * (c - 1))
        result.append(ProfilePoint(c, thr, 1.3 * 1000 * c / thr, float(memory * c)))
    return tuple(result)


# ---------------------------------------------------------------------------------------------
# The lab topology (hack/lab/edge-lab.yaml + manifests/acceleratorclasses) with a paper-like mix


def lab_cluster() -> Snapshot:
    objects = read_files([str(REPO / "hack/lab/edge-lab.yaml"), str(REPO / "manifests/acceleratorclasses")])
    return snapshot_from_objects(objects)


def lab_snapshot(*, tenants_per_model: int, load: float, seed: int) -> Snapshot:
    """Tenants of every model (onnx, plus EdgeTPU-compiled tflite twins), demand ~ load x a
    per-model base rate, profiles for every (model, class) the lab has."""
    rng = random.Random(seed)
    cluster = lab_cluster()
    class_names = {c.name for c in cluster.classes} & set(THROUGHPUT)
    profiles = tuple(
        Profile(model, cls, points(model, cls, (1, 2, 3, 4)), namespace="bench")
        for model in MODELS
        for cls in sorted(class_names)
    )
    base_rate = {
        "mobilenet-v1": 80,
        "mobilenet-v2": 70,
        "resnet-18": 40,
        "resnet-50": 15,
        "inception-v3": 10,
        "efficientnet-b0": 40,
    }
    tenants = []
    for model in MODELS:
        for i in range(tenants_per_model):
            fmt = "tflite" if model in TFLITE_MODELS and i % 2 == 1 else "onnx"
            tenants.append(
                Tenant(
                    key=f"bench/{model}-{i}",
                    model=model,
                    format=fmt,
                    demand=round(base_rate[model] * load * rng.uniform(0.5, 1.5), 1),
                    max_concurrency=4,
                    p95_slo_ms=rng.choice([None, 250.0]),
                    priority=float(rng.choice([100, 100, 200])),
                    memory_hint_mib=float(MEMORY[model]),
                )
            )
    return replace(cluster, tenants=tuple(tenants), profiles=profiles)


# ---------------------------------------------------------------------------------------------
# Random small instances (exhaustive search stays cheap: <= 6 tenants, <= 4 devices, <= 3 levels)

SMALL_CLASSES = (
    AcceleratorClass(
        "gpu",
        "nvidia.com/gpu",
        2048,
        ("onnx",),
        MappingProxyType({"acc": "gpu"}),
        (Toleration("nvidia.com/gpu", "Exists"),),
        SharingMode.TIME_SLICED,
        2,
        4.0,
    ),
    AcceleratorClass(
        "tpu", "coral.ai/edgetpu", 1024, ("tflite",), MappingProxyType({}), (), SharingMode.EXCLUSIVE, 1, 3.0
    ),
    AcceleratorClass(
        "cpu", "", 1536, ("onnx", "tflite"), MappingProxyType({}), (), SharingMode.TIME_SLICED, 2, 1.0
    ),
)
_SMALL_AS = {"gpu": "jetson-tx2", "tpu": "coral-edgetpu", "cpu": "x86-cpu"}


def random_small(seed: int) -> Snapshot:
    rng = random.Random(seed)
    nodes: list[Node] = []
    devices = 0
    while devices < rng.randint(2, 4) and len(nodes) < 4:
        kind = rng.choice(["gpu", "tpu", "cpu"])
        name = f"n{len(nodes)}"
        if kind == "gpu":
            nodes.append(
                Node(
                    name,
                    MappingProxyType({"acc": "gpu"}),
                    (Taint("nvidia.com/gpu", "NoSchedule"),),
                    MappingProxyType({"nvidia.com/gpu": 2}),
                )
            )
        elif kind == "tpu":
            nodes.append(Node(name, MappingProxyType({}), (), MappingProxyType({"coral.ai/edgetpu": 1})))
            devices += 1  # and its CPU
        else:
            nodes.append(Node(name, MappingProxyType({}), (), MappingProxyType({})))
        devices += 1
    levels = rng.choice([(1,), (1, 2), (1, 2, 4)])
    profiles = tuple(
        Profile(model, cls, points(model, _SMALL_AS[cls], levels, scale=rng.uniform(0.7, 1.3)))
        for model in MODELS
        for cls in ("gpu", "tpu", "cpu")
    )
    tenants = []
    node_names = [n.name for n in nodes]
    for i in range(rng.randint(2, 6)):
        model = rng.choice(MODELS)
        fmt = rng.choice(["onnx", "tflite"])
        current = None
        if rng.random() < 0.3:
            current = CurrentPlacement(rng.choice(node_names), rng.choice(["gpu", "tpu", "cpu"]), 0)
        tenants.append(
            Tenant(
                key=f"ns/t{i}",
                model=model,
                format=fmt,
                demand=round(rng.uniform(0.2, 1.5) * THROUGHPUT["x86-cpu"][model], 1),
                max_concurrency=max(levels),
                p95_slo_ms=rng.choice([None, None, 60.0]),
                priority=float(rng.choice([50, 100, 200])),
                memory_hint_mib=float(MEMORY[model]),
                current=current,
                allow_move=rng.random() > 0.1,
            )
        )
    return Snapshot(tuple(nodes), SMALL_CLASSES, tuple(tenants), profiles)


# ---------------------------------------------------------------------------------------------
# Synthetic large clusters: a quarter each of GPU, EdgeTPU, NCS2 and CPU nodes


def _synthetic_classes(cpu_slots: int) -> tuple[AcceleratorClass, ...]:
    return (
        AcceleratorClass(
            "jetson-tx2",
            "nvidia.com/gpu",
            4096,
            ("onnx", "tensorrt"),
            MappingProxyType({"kind": "jetson"}),
            (Toleration("nvidia.com/gpu", "Exists"),),
            SharingMode.TIME_SLICED,
            4,
            1.2,
        ),
        AcceleratorClass(
            "coral-edgetpu",
            "coral.ai/edgetpu",
            1024,
            ("tflite",),
            MappingProxyType({"kind": "coral"}),
            (),
            SharingMode.EXCLUSIVE,
            1,
            1.5,
        ),
        AcceleratorClass(
            "intel-ncs2",
            "intel.com/myriad",
            512,
            ("onnx", "openvino"),
            MappingProxyType({"kind": "ncs2"}),
            (),
            SharingMode.EXCLUSIVE,
            1,
            0.5,
        ),
        AcceleratorClass(
            "x86-cpu",
            "",
            4096,
            ("onnx", "openvino"),
            MappingProxyType({"kind": "x86"}),
            (),
            SharingMode.TIME_SLICED if cpu_slots > 1 else SharingMode.EXCLUSIVE,
            cpu_slots,
            1.0,
        ),
    )


def synthetic(
    *, tenants: int, nodes: int, seed: int, load: float = 1.0, jetson_gpus: tuple[int, ...] = (1, 2)
) -> Snapshot:
    """`nodes` nodes (a quarter Jetsons with `jetson_gpus` time-sliced GPUs each, then EdgeTPU,
    NCS2 and x86 nodes), `tenants` tenants of the paper's models."""
    rng = random.Random(seed)
    kinds = ("jetson", "coral", "ncs2", "x86")
    node_list = []
    for i in range(nodes):
        kind = kinds[i % 4]
        allocatable = {
            "jetson": {"nvidia.com/gpu": 4 * rng.choice(jetson_gpus)},
            "coral": {"coral.ai/edgetpu": 1},
            "ncs2": {"intel.com/myriad": 1},
        }.get(kind, {})
        taints = (Taint("nvidia.com/gpu", "NoSchedule", "present"),) if kind == "jetson" else ()
        node_list.append(
            Node(
                f"{kind}-{i:04d}",
                MappingProxyType({"kind": kind, "zone": f"z{i % 5}"}),
                taints,
                MappingProxyType(allocatable),
            )
        )
    classes = _synthetic_classes(cpu_slots=4)
    profiles = tuple(
        Profile(model, cls.name, points(model, cls.name, (1, 2, 4))) for model in MODELS for cls in classes
    )
    tenant_list = []
    for i in range(tenants):
        model = rng.choice(MODELS)
        fmt = "tflite" if model in TFLITE_MODELS and rng.random() < 0.3 else "onnx"
        tenant_list.append(
            Tenant(
                key=f"ns{i % 10}/t{i:05d}",
                model=model,
                format=fmt,
                demand=round(load * rng.uniform(0.3, 1.2) * THROUGHPUT["x86-cpu"][model], 1),
                max_concurrency=4,
                p95_slo_ms=rng.choice([None, 250.0]),
                priority=float(rng.choice([50, 100, 200])),
                memory_hint_mib=float(MEMORY[model]),
            )
        )
    return Snapshot(tuple(node_list), classes, tuple(tenant_list), profiles)


# ---------------------------------------------------------------------------------------------
# Traps: instances where the greedy is provably suboptimal. Each copy is an independent
# component (node selectors keep its tenants on its own devices), so the optimum is the sum of
# the copies' optima, which `cpsat_gain.py` also checks by exhaustive search on one copy.

TRAP_CLASS = AcceleratorClass(
    "cpu", "", 1000, ("onnx",), MappingProxyType({"trap": "knapsack"}), (), SharingMode.TIME_SLICED, 3, 50.0
)


def _trap_tenant(key: str, demand: float, memory: float, selector: dict[str, str]) -> Tenant:
    # relativeSpeed 50: 5,000 req/s estimated, so no device saturates and served = demand.
    return Tenant(
        key=key,
        model="m",
        format="onnx",
        demand=demand,
        max_concurrency=1,
        memory_hint_mib=memory,
        node_selector=MappingProxyType(selector),
    )


def knapsack_trap(copies: int) -> Snapshot:
    """Per copy one device of 1000 MiB (3 slots): A (100 req/s, 600 MiB) or B + C (90 req/s and
    500 MiB each). The greedy places A first (largest priority x demand) and B, C no longer fit;
    relocation puts A back where it was. Greedy 10,000 per copy, optimum 18,000."""
    nodes = tuple(
        Node(f"k{i:04d}", MappingProxyType({"copy": f"k{i}", "trap": "knapsack"})) for i in range(copies)
    )
    tenants = tuple(
        _trap_tenant(f"trap/k{i:04d}-{name}", demand, memory, {"copy": f"k{i}"})
        for i in range(copies)
        for name, demand, memory in (("a", 100.0, 600.0), ("b", 90.0, 500.0), ("c", 90.0, 500.0))
    )
    return Snapshot(nodes, (TRAP_CLASS,), tenants)


def assignment_trap(copies: int) -> Snapshot:
    """Per copy two exclusive devices X and Y: A (100 req/s) fits either, B (90 req/s) only X.
    The greedy gives A the first device, X, and B nothing; relocation ties keep A on X.
    Greedy 10,000 per copy, optimum 19,000 (A on Y, B on X)."""
    exclusive = replace(
        TRAP_CLASS,
        name="dev",
        node_selector=MappingProxyType({"trap": "assignment"}),
        sharing=SharingMode.EXCLUSIVE,
        slots=1,
    )
    nodes = tuple(
        Node(f"a{i:04d}{side}", MappingProxyType({"copy": f"a{i}", "side": side, "trap": "assignment"}))
        for i in range(copies)
        for side in ("x", "y")
    )
    tenants = tuple(
        t
        for i in range(copies)
        for t in (
            _trap_tenant(f"trap/a{i:04d}-a", 100.0, 100.0, {"copy": f"a{i}"}),
            _trap_tenant(f"trap/a{i:04d}-b", 90.0, 100.0, {"copy": f"a{i}", "side": "x"}),
        )
    )
    return Snapshot(nodes, (exclusive,), tenants)


def traps(copies: int) -> Snapshot:
    """Half knapsack traps, half assignment traps."""
    knapsack, assignment = knapsack_trap(copies - copies // 2), assignment_trap(copies // 2)
    return Snapshot(
        knapsack.nodes + assignment.nodes,
        knapsack.classes + assignment.classes,
        knapsack.tenants + assignment.tenants,
    )
