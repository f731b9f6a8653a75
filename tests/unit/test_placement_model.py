"""The estimate model of docs/placement.md section 3 by example, what the planner says it ignored,
how an unexpected error is confined to its tenant, and where CP-SAT beats the greedy."""

from __future__ import annotations

import json
from dataclasses import replace
from types import MappingProxyType

import pytest

from edgetenant.placement import (
    AcceleratorClass,
    Node,
    Plan,
    Profile,
    ProfilePoint,
    SharingMode,
    Snapshot,
    Tenant,
    UnplacedKind,
    cpsat,
    greedy,
    problem,
    snapshot_from_objects,
    solve,
    solve_baseline,
)
from edgetenant.placement.objects import objects_from_snapshot

CPU = AcceleratorClass("cpu", "", 2048, ("onnx",), relative_speed=1.0)
GPU = AcceleratorClass("gpu", "", 2048, ("onnx",), relative_speed=4.0)
NODE = Node("x")


def tenant(name: str = "m", **overrides: object) -> Tenant:
    fields: dict[str, object] = {"key": f"ns/{name}", "model": "m", "format": "onnx", "demand": 10.0}
    fields.update(overrides)
    return Tenant(**fields)  # type: ignore[arg-type]


def point(c: int, thr: float, p95: float, mem: float | None = 100.0, batch: int = 1) -> ProfilePoint:
    return ProfilePoint(c, thr, p95, mem, batch)


def only(plan: Plan) -> tuple[str, int, float, float, bool]:
    (p,) = plan.placements
    return p.accelerator_class, p.concurrency, p.predicted_throughput, p.predicted_p95_ms, p.estimated


# --- the crash of issue #18 and the estimate model -----------------------------------------------


def test_no_slo_and_a_base_profile_outside_the_range_is_estimated_not_a_crash() -> None:
    # The TypeError: no latencyP95Ms, no profile of its own on cpu, and the first other
    # class with a profile measured only concurrency 1, outside [2, 4].
    other = AcceleratorClass("a-gpu", "", 2048, ("onnx",), relative_speed=2.0)
    snap = Snapshot(
        (NODE,),
        (other, CPU),
        (tenant(min_concurrency=2, max_concurrency=4, accelerator_classes=("cpu",)),),
        (Profile("m", "a-gpu", (point(1, 50.0, 10.0),)),),
    )
    plan = solve(snap)
    cls, c, _, _, estimated = only(plan)
    assert (cls, estimated) == ("cpu", True)
    assert c in (2, 4)  # the reference estimate's candidates: lo, hi and powers of two between
    for name in ("spread", "first-fit", "fastest", "random"):
        assert solve_baseline(snap, name).placements  # the baseline path compiles the same way


def test_a_cross_class_estimate_keeps_the_batch_size_that_meets_the_slo() -> None:
    # Batch 8 is faster but misses the SLO; batch 1 meets it: the tenant fits (it used to be
    # left out because only the fastest batch size was considered).
    base = Profile("m", "gpu", (point(1, 400.0, 200.0, batch=8), point(1, 240.0, 20.0, batch=1)))
    snap = Snapshot(
        (NODE,),
        (CPU, GPU),
        (tenant(max_concurrency=1, p95_slo_ms=100.0, accelerator_classes=("cpu",)),),
        (base,),
    )
    assert only(solve(snap)) == ("cpu", 1, 10.0, 80.0, True)  # r = 1/4: thr 60 req/s, p95 80 ms


def test_the_base_class_is_the_nearest_in_speed_with_a_usable_point() -> None:
    target = AcceleratorClass("k", "", 2048, ("onnx",), relative_speed=2.0)
    slower = AcceleratorClass("a", "", 2048, ("onnx",), relative_speed=1.0)
    faster = AcceleratorClass("b", "", 2048, ("onnx",), relative_speed=2.5)
    unusable = AcceleratorClass("c", "", 2048, ("onnx",), relative_speed=2.0)  # nearest, but no usable point
    profiles = (
        Profile("m", "a", (point(1, 100.0, 10.0),)),
        Profile("m", "b", (point(1, 200.0, 10.0),)),
        Profile("m", "c", (point(1, 0.0, 10.0), point(5, 300.0, 10.0))),
    )
    snap = Snapshot(
        (NODE,),
        (target, slower, faster, unusable),
        (tenant(max_concurrency=1, demand=1000.0, accelerator_classes=("k",)),),
        profiles,
    )
    plan = solve(snap)
    # From b: 200 x 2/2.5 = 160 req/s (from a it would be 200, from c 300 at concurrency 5).
    assert only(plan) == ("k", 1, pytest.approx(160.0), pytest.approx(12.5), True)
    # Profile c fed no tenant's numbers: its ignored point is said once, for the input.
    assert plan.global_warnings == (
        "ModelProfile m.c: 1 point(s) with throughput 0 (or a value that is not a finite number) ignored: "
        "concurrency 1 batch 1",
    )
    assert "ns/m" not in plan.tenant_warnings


def test_an_own_profile_with_no_point_in_range_is_estimated_and_said_so() -> None:
    snap = Snapshot(
        (NODE,),
        (CPU,),
        (tenant(min_concurrency=4, max_concurrency=8),),
        (Profile("m", "cpu", (point(1, 50.0, 10.0),), namespace="ns", name="m.cpu"),),
    )
    plan = solve(snap)
    assert only(plan)[4] is True
    assert plan.tenant_warnings["ns/m"] == (
        "ModelProfile ns/m.cpu has no usable point at concurrency 4..8: "
        "cpu estimated from the reference formula",
    )


def test_the_batch_size_that_fits_the_device_is_kept() -> None:
    profile = Profile("m", "cpu", (point(1, 300.0, 5.0, mem=3000.0, batch=8), point(1, 90.0, 5.0, mem=500.0)))
    snap = Snapshot((NODE,), (CPU,), (tenant(max_concurrency=1, demand=200.0),), (profile,))
    assert only(solve(snap)) == ("cpu", 1, pytest.approx(90.0), 5.0, False)


def test_a_profile_in_the_tenants_namespace_wins_and_the_others_are_named() -> None:
    profiles = (
        Profile("m", "cpu", (point(1, 10.0, 5.0),), namespace="a", name="first"),
        Profile("m", "cpu", (point(1, 30.0, 5.0),), namespace="ns", name="z"),
        Profile("m", "cpu", (point(1, 20.0, 5.0),), namespace="ns", name="y"),
    )
    snap = Snapshot((NODE,), (CPU,), (tenant(max_concurrency=1, demand=100.0),), profiles)
    plan = solve(snap)
    assert only(plan)[2] == 20.0  # ns/y: in the tenant's namespace, first by name
    assert plan.tenant_warnings["ns/m"] == (
        "ModelProfile ns/y is used for model m on cpu; a/first, ns/z ignored",
    )
    other = replace(snap, tenants=(tenant(max_concurrency=1, demand=100.0, key="elsewhere/m"),))
    assert only(solve(other))[2] == 10.0  # no profile in its namespace: the first by (namespace, name)


@pytest.mark.parametrize(
    ("overrides", "profile_ceiling", "reason"),
    [
        ({"min_concurrency": 4, "max_concurrency": 2}, None, "concurrency min 4 is above max 2"),
        (
            {"min_concurrency": 4, "ceiling": 2},
            None,
            "concurrency min 4 is not below the learned ceiling 2 "
            "(status.concurrency.ceiling: the lowest count that failed)",
        ),
        (
            {"min_concurrency": 4},
            3,
            "concurrency min 4 is not below the ceiling 3 of ModelProfile ns/p on cpu",
        ),
        (
            {"p95_slo_ms": 5.0, "max_concurrency": 1},
            None,
            "p95 on cpu is at least 15 ms (estimated), above the SLO of 5 ms",
        ),
    ],
)
def test_reasons_name_the_bound_that_rules_a_class_out(
    overrides: dict[str, object], profile_ceiling: int | None, reason: str
) -> None:
    profiles = (Profile("m", "other", (), namespace="ns", name="p", ceiling=profile_ceiling),)
    if profile_ceiling is not None:
        profiles = (replace(profiles[0], accelerator_class="cpu"),)
    plan = solve(Snapshot((NODE,), (CPU,), (tenant(**overrides),), profiles))
    assert not plan.placements
    assert (plan.unplaced[0].reason, plan.unplaced[0].kind) == (reason, UnplacedKind.UNSCHEDULABLE)


# --- what was ignored, said -----------------------------------------------------------------------

CLASS = {
    "apiVersion": "edgetenant.io/v1alpha1",
    "kind": "AcceleratorClass",
    "metadata": {"name": "gpu"},
    "spec": {
        "memoryPerDeviceMiB": 1024,
        "instanceKind": "KIND_CPU",
        "formats": [{"format": "onnx", "backend": "onnxruntime", "image": "t:1"}],
    },
}
ITN = {
    "apiVersion": "edgetenant.io/v1alpha1",
    "kind": "InferenceTenant",
    "metadata": {"name": "t", "namespace": "ns"},
    "spec": {"model": {"format": "onnx", "uri": "file:///m.onnx"}},
}


def test_a_class_with_a_wrong_api_version_is_ignored_and_named_in_the_reason() -> None:
    wrong = {**CLASS, "apiVersion": "edgetenant.io/v1beta1"}
    listing = {
        **ITN,
        "metadata": {"name": "u", "namespace": "ns"},
        "spec": {**ITN["spec"], "acceleratorClasses": ["gpu"]},
    }
    snap = snapshot_from_objects([{"kind": "Node", "metadata": {"name": "x"}}, wrong, ITN, listing])
    plan = solve(snap)
    why = "apiVersion 'edgetenant.io/v1beta1' is not edgetenant.io/v1alpha1"
    assert plan.global_warnings == (
        f"AcceleratorClass gpu ignored: {why}",
        "no AcceleratorClasses in the input: no device to place on",
    )
    reasons = {u.tenant: u.reason for u in plan.unplaced}
    assert reasons == {
        "ns/t": f"no AcceleratorClass supports format onnx; AcceleratorClass gpu was ignored: {why}",
        "ns/u": f"AcceleratorClass gpu was ignored: {why}",
    }


def test_empty_input_and_odd_values_are_said() -> None:
    assert solve(Snapshot()).global_warnings == ("no InferenceTenants in the input: nothing to place",)
    node = {
        "kind": "Node",
        "metadata": {"name": "x"},
        "status": {"allocatable": {"cpu": "3500m", "vendor.io/dev": "500m"}},
    }
    status = {"activePlacement": {"node": "x", "acceleratorClass": "gpu", "device": "GPU-1"}}
    fixed = {**ITN["spec"], "concurrency": {"mode": "Fixed"}}
    snap = snapshot_from_objects([node, node, CLASS, {**ITN, "spec": fixed, "status": status}])
    plan = solve(snap)
    assert plan.global_warnings == (
        "Node x is given twice: the last one is used",
        "Node x: allocatable vendor.io/dev is '500m', not a whole number of devices: counted as 0",
    )
    assert plan.tenant_warnings == {
        "ns/t": (
            "concurrency.mode Fixed without a value: min..max (1..8) used",
            "status.activePlacement.device 'GPU-1' is not a number: device 0 assumed",
        )
    }


# --- an unexpected error costs only its tenant ------------------------------------------------------


def two_tenants() -> Snapshot:
    return Snapshot(
        (NODE,), (replace(CPU, sharing=SharingMode.TIME_SLICED, slots=2),), (tenant("bad"), tenant("good"))
    )


def assert_isolated(plan: Plan, error: str) -> None:
    assert [p.tenant for p in plan.placements] == ["ns/good"]
    (failed,) = plan.planning_errors
    assert failed.tenant == "ns/bad"
    assert failed.reason == f"internal planning error (please report it): {error}"
    assert json.loads(json.dumps(plan.to_json()))["unplaced"][0]["kind"] == "PlanningError"


def test_an_error_compiling_one_tenant_leaves_only_it_out(monkeypatch: pytest.MonkeyPatch) -> None:
    real = problem.levels_for

    def levels_for(t: Tenant, *args: object, **kwargs: object) -> object:
        if t.key == "ns/bad":
            raise RuntimeError("boom")
        return real(t, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(problem, "levels_for", levels_for)
    assert_isolated(solve(two_tenants()), "RuntimeError: boom")


def test_an_error_searching_is_traced_to_its_tenant(monkeypatch: pytest.MonkeyPatch) -> None:
    real = greedy._State.gains

    def gains(self: greedy._State, t: int, *args: object) -> object:
        if self.problem.tenants[t].tenant.key == "ns/bad":
            raise ZeroDivisionError("in the greedy")
        return real(self, t, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(greedy._State, "gains", gains)
    assert_isolated(solve(two_tenants()), "ZeroDivisionError: in the greedy")


def test_an_unreadable_tenant_is_a_planning_error_for_the_operator() -> None:
    bad = {**ITN, "metadata": {"name": "bad", "namespace": "ns"}, "spec": {"model": {"format": "onnx"}}}
    snap = snapshot_from_objects([{"kind": "Node", "metadata": {"name": "x"}}, CLASS, ITN, bad])
    plan = solve(snap)
    assert [p.tenant for p in plan.placements] == ["ns/t"]
    (failed,) = plan.planning_errors
    assert failed.tenant == "ns/bad"
    assert "InferenceTenant ns/bad could not be read: spec.model.uri: Field required" in failed.reason


# --- CP-SAT earns its place: a trap the greedy cannot leave ----------------------------------------


def knapsack_trap(copies: int) -> Snapshot:
    """Per copy one device of 1000 MiB: A (demand 100, 600 MiB) or B + C (90 each, 500 MiB each).
    The greedy takes A first and cannot fit B or C beside it; the optimum is B + C."""
    cls = AcceleratorClass(
        "cpu", "", 1000, ("onnx",), sharing=SharingMode.TIME_SLICED, slots=3, relative_speed=50.0
    )
    nodes = tuple(Node(f"n{i:03d}", MappingProxyType({"copy": str(i)})) for i in range(copies))
    tenants = tuple(
        tenant(
            f"{name}{i:03d}",
            demand=demand,
            memory_hint_mib=memory,
            max_concurrency=1,
            node_selector=MappingProxyType({"copy": str(i)}),
        )
        for i in range(copies)
        for name, demand, memory in (("a", 100.0, 600.0), ("b", 90.0, 500.0), ("c", 90.0, 500.0))
    )
    return Snapshot(nodes, (cls,), tenants)


def test_cp_sat_leaves_the_trap_the_greedy_falls_into() -> None:
    plan = solve(knapsack_trap(20))
    assert plan.search is not None
    assert plan.search.greedy_objective == pytest.approx(20 * 100 * 100.0)
    assert plan.objective == pytest.approx(20 * 100 * 180.0)  # the optimum of every copy
    assert (plan.optimal, plan.solver, plan.search.components, plan.search.cpsat_proved) == (
        True,
        "cp-sat",
        20,
        20,
    )
    assert solve(knapsack_trap(20), use_cpsat=False).objective == pytest.approx(20 * 100 * 100.0)


def test_a_cp_sat_failure_leaves_the_greedy_plan_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise MemoryError("out of memory in CP-SAT")

    monkeypatch.setattr(cpsat, "solve_cpsat", broken)
    plan = solve(knapsack_trap(2))
    assert plan.objective == pytest.approx(2 * 100 * 100.0)
    assert plan.global_warnings == (
        "CP-SAT failed (MemoryError: out of memory in CP-SAT); the greedy plan stands for 6 tenant(s) "
        "(ns/a000, ns/a001, ns/b000, ...)",
    )


# --- determinism ----------------------------------------------------------------------------------


def test_a_snapshot_survives_the_trip_through_objects() -> None:
    snap = knapsack_trap(2)
    back = snapshot_from_objects(objects_from_snapshot(snap), strict=True)
    assert back.tenants == tuple(sorted(snap.tenants, key=lambda t: t.key))
    assert back.classes == snap.classes
    assert solve(back).objective == solve(snap).objective


def test_without_or_tools_the_greedy_plan_stands_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgetenant.placement import solver  # noqa: PLC0415

    monkeypatch.setattr(solver, "_import_cpsat", lambda: False)
    plan = solve(knapsack_trap(1))
    assert (plan.solver, plan.objective, plan.optimal) == ("greedy", 100 * 100.0, False)
    assert plan.global_warnings == ("OR-Tools cannot be imported here: the plan is the greedy's alone",)
