"""Plans against an independent reading of docs/placement.md (hypothesis, issue #18).

Snapshots are generated as the objects the CRDs accept, built through the real API models and
checked by the offline CRD validator (schema and CEL rules), with the optional fields left out
often: no SLO, no demand, no memory hint, no profiles, no relativeSpeed, profiles measured outside
the tenant's range, points with zero throughput, current placements on devices that are gone.
For each: planning raises nothing and reports no planning error; every placement is feasible by
the model's own check and by this file's reading of the doc; the objective, predicted throughput
and p95 recomputed here from the doc equal the reported ones; on small instances no assignment
beats a plan that says it is optimal; and the same objects, in any order, give the same plan.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgetenant import api
from edgetenant.api.validation import validate_manifest
from edgetenant.placement import (
    AcceleratorClass,
    Node,
    Plan,
    Profile,
    ProfilePoint,
    SharingMode,
    Snapshot,
    Taint,
    Tenant,
    Toleration,
    snapshot_from_objects,
    solve,
    solve_baseline,
)
from edgetenant.placement.cli import main
from edgetenant.placement.objects import objects_from_snapshot
from edgetenant.placement.problem import compile_problem, violations

CLASS_NAMES = ("gpu", "tpu", "cpu")
MODELS = ("m0", "m1")
NAMESPACES = ("a", "b")
FORMATS = (api.ModelFormat.ONNX, api.ModelFormat.TFLITE)
DEDICATED = Taint("dedicated", "NoSchedule", "x")

# --------------------------------------------------------------------------------------------------
# The doc, read independently (sections 2-5). Inputs are the Snapshot's fields (section 1).


@dataclass(frozen=True)
class DocLevel:
    throughput: float
    p95_ms: float
    memory_mib: float
    estimated: bool


def doc_devices(snapshot: Snapshot) -> dict[tuple[str, str, int], tuple[float, int]]:
    """(node, class, index) -> (memory, slots), section 2."""
    found = {}
    for cls in snapshot.classes:
        for node in snapshot.nodes:
            if not node.ready or any(node.labels.get(k) != v for k, v in cls.node_selector.items()):
                continue
            if not cls.resource_name:
                count = 1
            elif cls.sharing is SharingMode.TIME_SLICED:
                count = node.allocatable.get(cls.resource_name, 0) // cls.slots
            else:
                count = node.allocatable.get(cls.resource_name, 0)
            slots = cls.slots if cls.sharing is SharingMode.TIME_SLICED else 1
            for i in range(count):
                found[(node.name, cls.name, i)] = (float(cls.memory_per_device_mib), slots)
    return found


def doc_tolerated(taint: Taint, tolerations: Sequence[Toleration]) -> bool:
    if taint.effect not in ("NoSchedule", "NoExecute"):
        return True
    for x in tolerations:
        if x.effect and x.effect != taint.effect:
            continue
        if x.operator == "Exists" and (not x.key or x.key == taint.key):
            return True
        if x.operator != "Exists" and x.key == taint.key and x.value == taint.value:
            return True
    return False


def doc_profile(snapshot: Snapshot, tenant: Tenant, cls: str) -> Profile | None:
    mine = sorted(
        (p for p in snapshot.profiles if p.model == tenant.model and p.accelerator_class == cls),
        key=lambda p: (p.namespace, p.name),
    )
    own_namespace = [p for p in mine if p.namespace == tenant.key.split("/")[0]]
    return (own_namespace or mine or [None])[0]


def doc_usable(p: ProfilePoint, lo: int, hi: int) -> bool:
    return p.throughput > 0 and lo <= p.concurrency <= hi


def doc_levels(snapshot: Snapshot, tenant: Tenant, cls: AcceleratorClass) -> dict[int, DocLevel]:
    """Section 3, from its text."""
    own = doc_profile(snapshot, tenant, cls.name)
    lo, hi = tenant.min_concurrency, tenant.max_concurrency
    for ceiling in (tenant.ceiling, own.ceiling if own else None):
        if ceiling is not None:
            hi = min(hi, ceiling - 1)
    if lo > hi:
        return {}
    hint = tenant.memory_hint_mib or 256.0
    candidates: list[tuple[int, float, float, float, bool, int]] = []

    def memory(p: ProfilePoint) -> tuple[float, bool]:
        return (p.memory_mib, False) if p.memory_mib is not None else (hint * p.concurrency, True)

    if own is not None:
        for p in own.points:
            if doc_usable(p, lo, hi):
                mem, est = memory(p)
                candidates.append((p.concurrency, p.throughput, p.p95_ms, mem, est, p.batch_size))
    if not candidates and cls.relative_speed:
        bases = []
        for other in snapshot.classes:
            if other.name == cls.name or not other.relative_speed:
                continue
            profile = doc_profile(snapshot, tenant, other.name)
            if profile is not None and any(doc_usable(p, lo, hi) for p in profile.points):
                distance = round(abs(math.log(cls.relative_speed / other.relative_speed)), 9)
                bases.append((distance, other.name, profile, other.relative_speed))
        if bases:
            _, _, profile, speed = min(bases, key=lambda b: (b[0], b[1]))
            r = cls.relative_speed / speed
            for p in profile.points:
                if doc_usable(p, lo, hi):
                    candidates.append(
                        (p.concurrency, p.throughput * r, p.p95_ms / r, memory(p)[0], True, p.batch_size)
                    )
    if not candidates:
        powers = {2**i for i in range(10) if lo <= 2**i <= hi}
        for c in sorted({lo, hi} | powers):
            thr = 100.0 * (cls.relative_speed or 1.0) * c / (1 + 0.5 * (c - 1))
            candidates.append((c, thr, 1.5 * 1000 * c / thr, hint * c, True, 1))
    levels: dict[int, DocLevel] = {}
    for c in sorted({x[0] for x in candidates}):
        keep = [
            x
            for x in candidates
            if x[0] == c
            and (tenant.p95_slo_ms is None or x[2] <= tenant.p95_slo_ms)
            and x[3] <= cls.memory_per_device_mib
        ]
        if keep:
            best = max(keep, key=lambda x: (x[1], -x[3], -x[5]))
            levels[c] = DocLevel(best[1], best[2], best[3], best[4])
    return levels


@dataclass(frozen=True)
class DocModel:
    devices: dict[tuple[str, str, int], tuple[float, int]]
    # tenant key -> device -> concurrency -> level (the tenant's feasible choices, section 4)
    choices: dict[str, dict[tuple[str, str, int], dict[int, DocLevel]]]
    tenants: dict[str, Tenant]
    move_cost: float


def doc_model(snapshot: Snapshot, move_cost: float = 100.0) -> DocModel:
    devices = doc_devices(snapshot)
    classes = {c.name: c for c in snapshot.classes}
    nodes = {n.name: n for n in snapshot.nodes}
    choices: dict[str, dict[tuple[str, str, int], dict[int, DocLevel]]] = {}
    for t in snapshot.tenants:
        allowed = t.accelerator_classes or tuple(c.name for c in snapshot.classes if t.format in c.formats)
        mine: dict[tuple[str, str, int], dict[int, DocLevel]] = {}
        for name in allowed:
            cls = classes.get(name)
            if cls is None or t.format not in cls.formats:
                continue
            levels = doc_levels(snapshot, t, cls)
            if not levels:
                continue
            for node_name, class_name, i in devices:
                node = nodes[node_name]
                if class_name != name or any(node.labels.get(k) != v for k, v in t.node_selector.items()):
                    continue
                if all(doc_tolerated(x, (*t.tolerations, *cls.tolerations)) for x in node.taints):
                    mine[(node_name, class_name, i)] = levels
        current = (t.current.node, t.current.accelerator_class, t.current.device) if t.current else None
        may_move = t.allow_move and t.moves_in_last_hour < t.max_moves_per_hour
        if not may_move and current in mine:
            mine = {current: mine[current]}  # pinned
        choices[t.key] = mine
    return DocModel(devices, choices, {t.key: t for t in snapshot.tenants}, move_cost)


Where = Mapping[str, tuple[tuple[str, str, int], int]]  # tenant -> (device, concurrency)


def doc_score(model: DocModel, where: Where) -> tuple[float, dict[str, float]] | None:
    """(objective, served per tenant) of an assignment, or None when section 4 forbids it."""
    on: dict[tuple[str, str, int], list[tuple[str, DocLevel]]] = {}
    for key, (device, c) in where.items():
        level = model.choices[key].get(device, {}).get(c)
        if level is None:
            return None
        on.setdefault(device, []).append((key, level))
    served: dict[str, float] = {}
    for device, members in on.items():
        memory, slots = model.devices[device]
        if len(members) > slots or sum(lv.memory_mib for _, lv in members) > memory + 1e-9:
            return None
        utilisation = sum(model.tenants[k].demand / lv.throughput for k, lv in members)
        for k, _ in members:
            served[k] = model.tenants[k].demand * min(1.0, 1.0 / utilisation) if utilisation > 0 else 0.0
    value = sum(model.tenants[k].priority * s for k, s in served.items())
    for key, t in model.tenants.items():
        if t.current is not None:
            here = (t.current.node, t.current.accelerator_class, t.current.device)
            if key not in where or where[key][0] != here:
                value -= model.move_cost
    return value, served


def doc_optimum(model: DocModel, limit: int = 4000) -> float | None:
    """The best objective over every assignment, when there are at most `limit` of them."""
    per_tenant = [
        [None, *((d, c) for d, levels in choices.items() for c in levels)]
        for choices in model.choices.values()
    ]
    if math.prod(len(x) for x in per_tenant) > limit:
        return None
    keys = list(model.choices)
    best = -math.inf
    for combo in itertools.product(*per_tenant):
        scored = doc_score(model, {k: x for k, x in zip(keys, combo, strict=True) if x is not None})
        if scored is not None:
            best = max(best, scored[0])
    return best


def check_against_the_doc(snapshot: Snapshot, plan: Plan) -> DocModel:
    model = doc_model(snapshot)
    where = {p.tenant: ((p.node, p.accelerator_class, p.device), p.concurrency) for p in plan.placements}
    scored = doc_score(model, where)
    assert scored is not None, "a placement the doc does not allow"
    objective, served = scored
    assert objective == pytest.approx(plan.objective, rel=1e-9, abs=1e-6)
    for p in plan.placements:
        level = model.choices[p.tenant][(p.node, p.accelerator_class, p.device)][p.concurrency]
        assert p.predicted_throughput == pytest.approx(served[p.tenant], rel=1e-9, abs=1e-9)
        assert (p.predicted_p95_ms, p.estimated) == (pytest.approx(level.p95_ms, rel=1e-12), level.estimated)
    return model


# --------------------------------------------------------------------------------------------------
# Objects the CRDs accept, through the API models


def _toleration(draw: st.DrawFn) -> list[api.Toleration]:
    return [api.Toleration(key="dedicated", operator="Exists")] if draw(st.booleans()) else []


@st.composite
def accelerator_class(draw: st.DrawFn, name: str) -> api.AcceleratorClass:
    time_sliced = draw(st.booleans())
    device = draw(st.integers(0, 2)) > 0 and name != "cpu"
    formats = draw(st.sampled_from([list(FORMATS), list(FORMATS), [FORMATS[0]], [FORMATS[1]]]))
    return api.AcceleratorClass(
        metadata=api.ObjectMeta(name=name),
        spec=api.AcceleratorClassSpec(
            resource_name=f"vendor.io/{name}" if device else "",
            node_selector={"acc": name} if draw(st.integers(0, 3)) == 0 else {},
            tolerations=_toleration(draw),
            memory_per_device_mib=draw(st.sampled_from([1024, 4096, 300])),
            sharing=api.Sharing(
                mode=api.SharingMode.TIME_SLICED if time_sliced else api.SharingMode.EXCLUSIVE,
                slots=draw(st.integers(2, 3)) if time_sliced else 1,
            ),
            formats=[api.FormatBackend(format=f, backend="onnxruntime", image="triton:1") for f in formats],
            instance_kind=api.InstanceKind.KIND_GPU if device else api.InstanceKind.KIND_CPU,
            relative_speed=draw(st.sampled_from([2.0, None, 0.5, 1.0, 4.0])),
        ),
    )


@st.composite
def node(draw: st.DrawFn, i: int) -> dict[str, Any]:
    kind = draw(st.sampled_from(CLASS_NAMES))  # the devices it has; its label says so (usually)
    labels = {"acc": kind} if draw(st.integers(0, 4)) > 0 else {}
    allocatable = {f"vendor.io/{kind}": str(draw(st.sampled_from([2, 1, 4, 0])))}
    if draw(st.integers(0, 3)) == 0:
        allocatable["vendor.io/fpga"] = draw(st.sampled_from(["1", "500m"]))
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": f"n{i}", "labels": labels},
        "status": {"allocatable": allocatable},
    }
    if draw(st.integers(0, 5)) == 0:
        body["spec"] = {
            "taints": [{"key": DEDICATED.key, "value": DEDICATED.value, "effect": DEDICATED.effect}]
        }
    ready = draw(st.sampled_from(["True", None, "True", "True", "False"]))
    if ready is not None:
        body["status"]["conditions"] = [{"type": "Ready", "status": ready}]
    return body


@st.composite
def tenant(draw: st.DrawFn, i: int, node_count: int) -> api.InferenceTenant:
    if draw(st.booleans()):
        low = draw(st.sampled_from([1, 1, 1, 2, 3]))
        high = draw(st.integers(low, low + 2))
        concurrency = api.Concurrency(min=low, max=high, initial=draw(st.integers(low, high)))
    else:
        concurrency = api.Concurrency(mode=api.ConcurrencyMode.FIXED, value=draw(st.integers(1, 3)))
    status = None
    if draw(st.booleans()):
        status = api.InferenceTenantStatus(
            active_placement=api.DevicePlacement(
                node=f"n{draw(st.integers(0, node_count))}",  # n<node_count> does not exist
                accelerator_class=draw(st.sampled_from(CLASS_NAMES)),
                device=draw(st.sampled_from([None, "0", "1"])),
            ),
            moves_in_last_hour=draw(st.integers(0, 5)),
            concurrency=api.ConcurrencyStatus(
                current=0, target=0, ceiling=draw(st.sampled_from([None, 1, 2, 3]))
            ),
            observed=api.ObservedSignals(throughput=draw(st.sampled_from([None, 0.0, 30.0]))),
        )
    return api.InferenceTenant(
        metadata=api.ObjectMeta(name=f"t{i}", namespace=draw(st.sampled_from(NAMESPACES))),
        spec=api.InferenceTenantSpec(
            model=api.ModelSource(
                name=draw(st.sampled_from([*MODELS, None])),
                format=draw(st.sampled_from(FORMATS)),
                uri="file:///models/m.onnx",
                memory_hint_mib=draw(st.sampled_from([200, None, 64, 700])),
            ),
            accelerator_classes=draw(
                st.sampled_from([[], [], [], ["gpu"], ["cpu", "gpu"], ["tpu", "cpu"], ["missing", "cpu"]])
            ),
            slo=api.Slo(
                latency_p95_ms=draw(st.sampled_from([None, 40.0, 8.0, 1000.0])),
                throughput=draw(st.sampled_from([150.0, 400.0, 40.0, None, 5.0, 0.0])),
            ),
            concurrency=concurrency,
            priority=draw(st.sampled_from([0, 50, 100, 200])),
            placement=api.PlacementHints(
                node_selector={"acc": draw(st.sampled_from(CLASS_NAMES))}
                if draw(st.integers(0, 7)) == 0
                else {},
                tolerations=_toleration(draw),
                allow_move=draw(st.booleans()),
                max_moves_per_hour=draw(st.integers(0, 4)),
            ),
        ),
        status=status,
    )


@st.composite
def model_profile(draw: st.DrawFn, j: int) -> api.ModelProfile:
    pairs = draw(
        st.lists(
            st.tuples(st.sampled_from([1, 2, 3, 5, 8]), st.sampled_from([1, 4])), max_size=5, unique=True
        )
    )
    points = [
        api.ProfilePoint(
            concurrency=c,
            batch_size=b,
            throughput=draw(st.sampled_from([90.0, 20.0, 400.0, 0.0])),
            latency_p95_ms=draw(st.sampled_from([0.0, 6.0, 30.0, 200.0])),
            memory_mib=draw(st.sampled_from([None, 0, 150, 900])),
        )
        for c, b in pairs
    ]
    return api.ModelProfile(
        metadata=api.ObjectMeta(name=f"p{j}", namespace=draw(st.sampled_from(NAMESPACES))),
        spec=api.ModelProfileSpec(
            model=draw(st.sampled_from([*MODELS, "t0"])),
            accelerator_class=draw(st.sampled_from(CLASS_NAMES)),
            points=points,
            ceiling=draw(st.sampled_from([None, None, 2, 5])),
        ),
    )


@st.composite
def cluster(draw: st.DrawFn) -> list[dict[str, Any]]:
    node_count = draw(st.sampled_from([3, 2, 4, 1, 0]))
    names = draw(st.sampled_from([list(CLASS_NAMES), ["gpu", "cpu"], ["cpu"], list(CLASS_NAMES), []]))
    resources: list[api.Resource] = [draw(accelerator_class(name)) for name in names]
    resources += [draw(tenant(i, node_count)) for i in range(draw(st.sampled_from([5, 4, 6, 3, 2, 1, 0])))]
    resources += [draw(model_profile(j)) for j in range(draw(st.sampled_from([2, 3, 1, 4, 0])))]
    objects = [r.to_dict() for r in resources]
    for obj in objects:
        assert validate_manifest(obj).errors == [], obj  # what the API server would accept
    objects += [draw(node(i)) for i in range(node_count)]
    if draw(st.integers(0, 5)) == 0:  # a class of another API version: ignored, and said so
        objects.append({**objects[0], "apiVersion": "edgetenant.io/v1beta1"} if names else {})
    return [o for o in objects if o]


PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _comparable(plan: Plan) -> dict[str, Any]:
    document = plan.to_json()
    del document["solveMs"]
    return document


@PROPERTY
@given(cluster(), st.randoms(use_true_random=False))
def test_plans_follow_the_documented_model(objects: list[dict[str, Any]], rng: random.Random) -> None:
    snapshot = snapshot_from_objects(objects)
    plan = solve(snapshot)
    assert plan.planning_errors == ()
    assert violations(compile_problem(snapshot), plan.assignment()) == []
    model = check_against_the_doc(snapshot, plan)
    optimum = doc_optimum(model)
    if optimum is not None:
        assert plan.objective <= optimum + 1e-6
        if plan.optimal:  # CP-SAT proves its optimum up to integer scaling (docs: within 0.1%)
            assert plan.objective >= optimum - 1e-3 * abs(optimum) - 1e-6
    for name in ("spread", "first-fit", "fastest", "random"):
        baseline = solve_baseline(snapshot, name)
        assert baseline.planning_errors == ()
        check_against_the_doc(snapshot, baseline)
    assert _comparable(solve(snapshot)) == _comparable(plan)
    shuffled = list(objects)
    rng.shuffle(shuffled)
    assert _comparable(solve(snapshot_from_objects(shuffled))) == _comparable(plan)


# --------------------------------------------------------------------------------------------------
# Ten times the same plan, a 50-tenant x 20-node cluster included


def medium_cluster(*, tenants: int, nodes: int, seed: int) -> list[dict[str, Any]]:
    """A quarter each of Jetson-like (GPU time-sliced 4 ways), EdgeTPU, NCS2 and x86 nodes;
    tenants of six models with profiles on some classes, some currently placed."""
    rng = random.Random(seed)
    kinds = ("jetson", "coral", "ncs2", "x86")
    classes = (
        AcceleratorClass(
            "jetson",
            "nvidia.com/gpu",
            4096,
            ("onnx",),
            {"kind": "jetson"},
            (),
            SharingMode.TIME_SLICED,
            4,
            4.0,
        ),
        AcceleratorClass(
            "coral", "coral.ai/tpu", 1024, ("tflite",), {"kind": "coral"}, (), SharingMode.EXCLUSIVE, 1, 3.0
        ),
        AcceleratorClass(
            "ncs2", "intel.com/vpu", 512, ("onnx",), {"kind": "ncs2"}, (), SharingMode.EXCLUSIVE, 1, 0.5
        ),
        AcceleratorClass(
            "x86", "", 4096, ("onnx", "tflite"), {"kind": "x86"}, (), SharingMode.TIME_SLICED, 4, 1.0
        ),
    )
    resource = {c.name: c.resource_name for c in classes}
    node_list = tuple(
        Node(
            f"{kinds[i % 4]}-{i:03d}",
            {"kind": kinds[i % 4]},
            (),
            {resource[kinds[i % 4]]: 4 if kinds[i % 4] == "jetson" else 1} if resource[kinds[i % 4]] else {},
        )
        for i in range(nodes)
    )
    models = [f"model-{k}" for k in range(6)]
    profiles = tuple(
        Profile(
            m,
            c.name,
            tuple(
                ProfilePoint(
                    k, base * k / (1 + 0.3 * (k - 1)), 1300 * k / (base * k / (1 + 0.3 * (k - 1))), mem * k
                )
                for k in (1, 2, 4)
            ),
        )
        for m in models
        for c in classes
        if rng.random() < 0.6
        for base, mem in [(rng.uniform(20, 250) * (c.relative_speed or 1.0), rng.choice([120.0, 300.0]))]
    )
    tenant_list = tuple(
        Tenant(
            key=f"ns{i % 5}/t{i:03d}",
            model=rng.choice(models),
            format=rng.choice(["onnx", "onnx", "tflite"]),
            demand=round(rng.uniform(10, 200), 1),
            max_concurrency=4,
            p95_slo_ms=rng.choice([None, 250.0]),
            priority=float(rng.choice([50, 100, 200])),
            memory_hint_mib=float(rng.choice([120, 300])),
        )
        for i in range(tenants)
    )
    return objects_from_snapshot(Snapshot(node_list, classes, tenant_list, profiles))


@pytest.mark.parametrize(("tenants", "nodes"), [(6, 4), (50, 20)])
def test_the_same_input_gives_the_same_plan_ten_times(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tenants: int, nodes: int
) -> None:
    (tmp_path / "cluster.yaml").write_text(
        yaml.safe_dump_all(medium_cluster(tenants=tenants, nodes=nodes, seed=7))
    )
    outputs = []
    for _ in range(10):
        assert main(["-f", str(tmp_path / "cluster.yaml"), "-o", "json"]) == 0
        document = json.loads(capsys.readouterr().out)
        del document["solveMs"]
        outputs.append(document)
    assert all(o == outputs[0] for o in outputs)
    assert len(outputs[0]["placements"]) >= tenants // 2
    assert not any("wall-clock" in w["message"] for w in outputs[0]["warnings"])
