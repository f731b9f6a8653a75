"""Placement by example: devices, compatibility, the sharing rule, moves, and the reasons given
for tenants left out."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

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
    solve,
    solve_baseline,
)
from edgetenant.placement.problem import (
    Choice,
    DeviceRef,
    compile_problem,
    devices_of,
    evaluate,
    served_on_device,
)

GPU = AcceleratorClass(
    "gpu",
    "nvidia.com/gpu",
    memory_per_device_mib=1024,
    formats=("onnx",),
    node_selector=MappingProxyType({"acc": "gpu"}),
    tolerations=(Toleration("nvidia.com/gpu", "Exists"),),
    sharing=SharingMode.TIME_SLICED,
    slots=4,
    relative_speed=4.0,
)
TPU = AcceleratorClass("tpu", "coral.ai/edgetpu", 512, ("tflite",), relative_speed=3.0)
CPU = AcceleratorClass("cpu", "", 2048, ("onnx", "tflite"), relative_speed=1.0)


def node(
    name: str,
    *,
    labels: dict[str, str] | None = None,
    taints: tuple[Taint, ...] = (),
    allocatable: dict[str, int] | None = None,
    ready: bool = True,
) -> Node:
    return Node(name, MappingProxyType(labels or {}), taints, MappingProxyType(allocatable or {}), ready)


def gpu_node(name: str, replicas: int = 4) -> Node:
    return node(
        name,
        labels={"acc": "gpu"},
        taints=(Taint("nvidia.com/gpu", "NoSchedule", "present"),),
        allocatable={"nvidia.com/gpu": replicas},
    )


def tenant(name: str, **overrides: object) -> Tenant:
    fields: dict[str, object] = {
        "key": f"ns/{name}",
        "model": name,
        "format": "onnx",
        "demand": 10.0,
        "memory_hint_mib": 100.0,
    }
    fields.update(overrides)
    return Tenant(**fields)  # type: ignore[arg-type]


def profile(model: str, cls: str, *points: tuple[int, float, float, float]) -> Profile:
    return Profile(model, cls, tuple(ProfilePoint(c, thr, p95, mem) for c, thr, p95, mem in points))


# --- devices -----------------------------------------------------------------------------------


def test_devices_follow_the_contract() -> None:
    exclusive = replace(GPU, sharing=SharingMode.EXCLUSIVE, slots=1)
    assert devices_of(gpu_node("a", replicas=2), exclusive) == 2
    assert devices_of(gpu_node("a", replicas=8), GPU) == 2  # TimeSliced: replicas // slots
    assert devices_of(gpu_node("a", replicas=3), GPU) == 0
    assert devices_of(node("x"), CPU) == 1  # a CPU class: one device per matching node
    assert devices_of(node("x", ready=False), CPU) == 0
    assert devices_of(node("x"), GPU) == 0  # selector does not match


def test_a_time_sliced_device_holds_up_to_its_slots() -> None:
    tenants = tuple(tenant(f"t{i}", accelerator_classes=("gpu",), max_concurrency=1) for i in range(6))
    plan = solve(Snapshot((gpu_node("g"),), (GPU,), tenants), time_limit_s=1)
    assert len(plan.placements) == 4
    assert [d.slots_used for d in plan.devices] == [4]
    assert all(u.reason == "all 1 compatible devices are full (no free slot)" for u in plan.unplaced)


# --- the sharing rule and the objective ---------------------------------------------------------


def test_sharing_serves_everyone_the_same_fraction_once_saturated() -> None:
    assert served_on_device([(30.0, 100.0), (20.0, 100.0)]) == [30.0, 20.0]  # U = 0.5
    assert served_on_device([(100.0, 100.0), (100.0, 50.0)]) == pytest.approx([100 / 3, 100 / 3])  # U = 3


def test_evaluate_is_priority_weighted_served_minus_moves() -> None:
    snap = Snapshot(
        (node("x"),),
        (replace(CPU, sharing=SharingMode.TIME_SLICED, slots=2),),
        (
            tenant("a", demand=50.0, priority=200.0, max_concurrency=1, current=CurrentPlacement("y", "cpu")),
            tenant("b", demand=50.0, priority=100.0, max_concurrency=1),
        ),
        (profile("a", "cpu", (1, 100.0, 10.0, 100.0)), profile("b", "cpu", (1, 50.0, 20.0, 100.0))),
    )
    problem = compile_problem(snap, move_cost=7.0)
    where = Choice(DeviceRef("x", "cpu", 0), 1)
    # U = 50/100 + 50/50 = 1.5: both served 50/1.5; tenant a moved from node y.
    assert evaluate(problem, {"ns/a": where, "ns/b": where}) == pytest.approx((200 + 100) * 50 / 1.5 - 7.0)
    with pytest.raises(ValueError, match="not compatible"):
        evaluate(problem, {"ns/a": Choice(DeviceRef("x", "cpu", 0), 2)})


def test_concurrency_is_raised_when_it_serves_more_and_fits() -> None:
    points = ((1, 40.0, 10.0, 300.0), (2, 70.0, 12.0, 600.0), (4, 100.0, 30.0, 1200.0))
    snap = Snapshot(
        (gpu_node("g"),),
        (GPU,),
        (tenant("m", demand=90.0, accelerator_classes=("gpu",), p95_slo_ms=20.0),),
        (profile("m", "gpu", *points),),
    )
    plan = solve(snap, time_limit_s=1)
    # c=4 would serve all 90 req/s but breaks the SLO (30 ms > 20 ms); c=2 serves 70.
    (placement,) = plan.placements
    assert (placement.concurrency, placement.estimated) == (2, False)
    assert placement.predicted_throughput == pytest.approx(70.0)


def test_a_tenant_without_a_profile_is_placed_on_estimates() -> None:
    plan = solve(Snapshot((node("x"),), (CPU,), (tenant("m"),)), time_limit_s=1)
    assert plan.placements[0].estimated


def test_preference_order_breaks_ties() -> None:
    snap = Snapshot(
        (node("x"), gpu_node("g")), (CPU, GPU), (tenant("m", accelerator_classes=("cpu", "gpu")),)
    )
    assert solve(snap, time_limit_s=1).placements[0].accelerator_class == "cpu"
    snap = replace(snap, tenants=(tenant("m", accelerator_classes=("gpu", "cpu")),))
    assert solve(snap, time_limit_s=1).placements[0].accelerator_class == "gpu"


def test_the_solver_beats_the_baselines_on_a_contended_cluster() -> None:
    tenants = tuple(tenant(f"t{i}", demand=40.0 + 10 * i, format=("onnx", "tflite")[i % 2]) for i in range(8))
    snap = Snapshot(
        (gpu_node("g"), node("tpu", allocatable={"coral.ai/edgetpu": 1}), node("x")), (GPU, TPU, CPU), tenants
    )
    plan = solve(snap, time_limit_s=1)
    for name in ("spread", "first-fit", "fastest", "random"):
        assert plan.objective >= solve_baseline(snap, name).objective, name


# --- moves ------------------------------------------------------------------------------------


def _settled(snap: Snapshot) -> Snapshot:
    plan = solve(snap, time_limit_s=1)
    where = {p.tenant: CurrentPlacement(p.node, p.accelerator_class, p.device) for p in plan.placements}
    return replace(snap, tenants=tuple(replace(t, current=where.get(t.key)) for t in snap.tenants))


def test_an_unchanged_cluster_moves_nothing() -> None:
    snap = Snapshot(
        (node("x"), node("y"), gpu_node("g")), (CPU, GPU), tuple(tenant(f"t{i}") for i in range(5))
    )
    settled = _settled(snap)
    plan = solve(settled, time_limit_s=1)
    assert plan.moves == 0
    assert not any(p.moved for p in plan.placements)


def test_a_tenant_that_may_not_move_stays_even_when_moving_pays() -> None:
    slow = replace(CPU, name="slow", relative_speed=0.1)
    snap = Snapshot(
        (node("x"), gpu_node("g")),
        (slow, GPU),
        (tenant("m", demand=100.0, current=CurrentPlacement("x", "slow"), allow_move=False),),
    )
    assert solve(snap, time_limit_s=1).placements[0].accelerator_class == "slow"
    spent = replace(snap.tenants[0], allow_move=True, moves_in_last_hour=4, max_moves_per_hour=4)
    assert solve(replace(snap, tenants=(spent,)), time_limit_s=1).placements[0].accelerator_class == "slow"
    free = replace(spent, moves_in_last_hour=0)
    plan = solve(replace(snap, tenants=(free,)), time_limit_s=1)
    assert (plan.placements[0].accelerator_class, plan.moves) == ("gpu", 1)


def test_a_pinned_tenant_whose_node_is_gone_is_placed_elsewhere() -> None:
    snap = Snapshot(
        (node("y"),), (CPU,), (tenant("m", current=CurrentPlacement("x", "cpu"), allow_move=False),)
    )
    plan = solve(snap, time_limit_s=1)
    assert (plan.placements[0].node, plan.moves) == ("y", 1)


# --- reasons ----------------------------------------------------------------------------------


def _reason(snap: Snapshot) -> str:
    plan = solve(snap, time_limit_s=1)
    assert not plan.placements
    return plan.unplaced[0].reason


def test_reason_no_class_supports_the_format() -> None:
    snap = Snapshot((node("x"),), (GPU,), (tenant("m", format="tflite"),))
    assert _reason(snap) == "no AcceleratorClass supports format tflite"


def test_reason_listed_class_does_not_support_the_format_or_does_not_exist() -> None:
    snap = Snapshot((node("x"),), (CPU, TPU), (tenant("m", accelerator_classes=("tpu", "npu")),))
    assert (
        _reason(snap)
        == "AcceleratorClass tpu does not support format onnx; AcceleratorClass npu does not exist"
    )


def test_reason_no_node_tolerates_the_taint() -> None:
    snap = Snapshot((node("x", taints=(Taint("dedicated", "NoSchedule", "ml"),)),), (CPU,), (tenant("m"),))
    assert _reason(snap) == "no node tolerates taint dedicated=ml:NoSchedule (class cpu)"
    tolerant = tenant("m", tolerations=(Toleration("dedicated", "Equal", "ml", "NoSchedule"),))
    assert solve(replace(snap, tenants=(tolerant,)), time_limit_s=1).placements


def test_reason_the_class_tolerates_what_its_nodes_need() -> None:
    intolerant = replace(GPU, tolerations=())
    snap = Snapshot((gpu_node("g"),), (intolerant,), (tenant("m"),))
    assert _reason(snap) == "no node tolerates taint nvidia.com/gpu=present:NoSchedule (class gpu)"


def test_reason_node_selector() -> None:
    snap = Snapshot((node("x"),), (CPU,), (tenant("m", node_selector=MappingProxyType({"site": "a"})),))
    assert _reason(snap) == "no node matches the nodeSelector {'site': 'a'} of cpu"


def test_reason_memory_names_the_largest_free() -> None:
    snap = Snapshot(
        (node("x"),),
        (replace(CPU, memory_per_device_mib=1024, sharing=SharingMode.TIME_SLICED, slots=2),),
        (
            tenant("big", memory_hint_mib=512.0, max_concurrency=1, priority=200.0),
            tenant("bigger", memory_hint_mib=900.0, max_concurrency=1),
        ),
    )
    plan = solve(snap, time_limit_s=1)
    assert [p.tenant for p in plan.placements] == ["ns/big"]
    assert plan.unplaced[0].reason == "needs 900 MiB, largest free on a compatible device is 512 MiB"


def test_reason_memory_larger_than_any_device() -> None:
    snap = Snapshot((node("x"),), (CPU,), (tenant("m", memory_hint_mib=4096.0, max_concurrency=1),))
    assert _reason(snap) == "needs 4096 MiB, a cpu device has 2048 MiB"


def test_reason_slo_cannot_be_met() -> None:
    snap = Snapshot(
        (node("x"),), (CPU,), (tenant("m", p95_slo_ms=5.0),), (profile("m", "cpu", (1, 50.0, 20.0, 100.0)),)
    )
    assert _reason(snap) == "p95 on cpu is at least 20 ms, above the SLO of 5 ms"


def test_reason_no_ready_node() -> None:
    snap = Snapshot((node("x", ready=False),), (CPU,), (tenant("m"),))
    assert _reason(snap) == "no Ready node offers an allocatable cpu device for cpu"


def test_greedy_alone_gives_the_same_kind_of_plan() -> None:
    snap = Snapshot((node("x"), gpu_node("g")), (CPU, GPU), tuple(tenant(f"t{i}") for i in range(3)))
    plan = solve(snap, use_cpsat=False)
    assert plan.solver == "greedy"
    assert len(plan.placements) == 3
