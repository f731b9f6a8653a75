"""CP-SAT without pandas: `placement.sat` builds the program OR-Tools' own `cp_model` would, and
the operator's runtime never imports pandas, even after a plan that needed CP-SAT."""

from __future__ import annotations

import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from edgetenant.placement import (
    AcceleratorClass,
    CurrentPlacement,
    Node,
    SharingMode,
    Snapshot,
    Taint,
    Tenant,
    Toleration,
    solve,
)
from edgetenant.placement import sat as sat_module

REPO = Path(__file__).resolve().parents[2]

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


def cluster(seed: int) -> Snapshot:
    """A few GPU nodes (time-sliced, saturated by demand), TPU and CPU nodes, mixed tenants."""
    rng = random.Random(seed)
    nodes = []
    for i in range(3 + seed % 3):
        nodes.append(
            Node(
                f"g{i}",
                MappingProxyType({"acc": "gpu", "zone": f"z{i % 2}"}),
                (Taint("nvidia.com/gpu", "NoSchedule", "present"),),
                MappingProxyType({"nvidia.com/gpu": 4 * rng.choice((1, 2))}),
            )
        )
    nodes.append(Node("t0", MappingProxyType({"acc": "tpu"}), (), MappingProxyType({"coral.ai/edgetpu": 1})))
    nodes.append(Node("c0", MappingProxyType({"zone": "z0"})))
    tenants = tuple(
        Tenant(
            key=f"ns/t{i}",
            model=f"m{i % 4}",
            format=rng.choice(("onnx", "onnx", "tflite")),
            demand=float(rng.choice((5, 20, 60, 150, 400))),
            max_concurrency=rng.choice((1, 2, 4)),
            memory_hint_mib=float(rng.choice((100, 250, 400))),
            priority=float(rng.choice((50, 100, 200))),
            tolerations=(Toleration("nvidia.com/gpu", "Exists"),),
        )
        for i in range(8 + 2 * seed)
    )
    return Snapshot(tuple(nodes), (GPU, TPU, CPU), tenants)


def settled(snapshot: Snapshot) -> Snapshot:
    """The cluster carrying out its first plan, then one demand doubled: a re-plan with hints and
    move bonuses."""
    plan = solve(snapshot, time_limit_s=2)
    where = {p.tenant: CurrentPlacement(p.node, p.accelerator_class, p.device) for p in plan.placements}
    tenants = [replace(t, current=where.get(t.key)) for t in snapshot.tenants]
    tenants[0] = replace(tenants[0], demand=tenants[0].demand * 2)
    return replace(snapshot, tenants=tuple(tenants))


SNAPSHOTS = [cluster(seed) for seed in (2, 3, 4, 6)] + [settled(cluster(seed)) for seed in range(5)]


def programs_and_plan(
    snapshot: Snapshot, monkeypatch: pytest.MonkeyPatch, model: Any
) -> tuple[list[str], dict[str, Any]]:
    """Every CP-SAT program `solve` sends (as text), and the plan, with `model` as the builder."""
    sent: list[str] = []
    real_solve = sat_module.solve

    def recording(built: Any, parameters: Any) -> Any:
        sent.append(str(built.proto))
        return real_solve(built, parameters)

    with monkeypatch.context() as patch:
        patch.setattr(sat_module, "Model", model)
        patch.setattr(sat_module, "solve", recording)
        plan = solve(snapshot, time_limit_s=2)
    assert plan.search is not None
    return sent, {
        "objective": plan.objective,
        "placements": plan.placements,
        "unplaced": plan.unplaced,
        "optimal": plan.optimal,
        "cpsat_deterministic_s": plan.search.cpsat_deterministic_s,
    }


@pytest.mark.parametrize("snapshot", SNAPSHOTS)
def test_the_program_is_the_one_cp_model_builds(snapshot: Snapshot, monkeypatch: pytest.MonkeyPatch) -> None:
    cp_model = pytest.importorskip("ortools.sat.python.cp_model")  # the reference imports pandas
    ours, our_plan = programs_and_plan(snapshot, monkeypatch, sat_module.Model)
    theirs, their_plan = programs_and_plan(snapshot, monkeypatch, cp_model.CpModel)
    assert ours, "CP-SAT did not run: the comparison would prove nothing"
    assert ours == theirs
    assert our_plan == their_plan


def test_the_operator_runtime_never_imports_pandas() -> None:
    """Importing the operator (what `edgetenant run` loads), preloading CP-SAT as a new leader
    does, and solving a plan that needs CP-SAT leave pandas unloaded."""
    probe = (
        "import sys\n"
        "import edgetenant.handlers, edgetenant.reconcile, edgetenant.tuning_driver\n"
        "from edgetenant.cli import run_parser\n"
        "edgetenant.handlers._preload_cpsat()\n"
        "from edgetenant.placement import solve\n"
        "from tests.unit.test_placement_sat import SNAPSHOTS\n"
        "plan = solve(SNAPSHOTS[-1], time_limit_s=2)\n"
        "print('cpsat', plan.search.cpsat_components)\n"
        "print('loaded', sorted(m for m in ('pandas', 'ortools.sat.python.cp_model') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO, timeout=120
    )
    lines = result.stdout.strip().splitlines()
    assert lines[-2] != "cpsat 0", "CP-SAT did not run"
    assert lines[-1] == "loaded []", result.stdout
