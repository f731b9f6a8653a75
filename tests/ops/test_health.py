"""What GitOps tools make of a tenant's status, computed by the tools' own rules: Argo CD's health
script (manifests/argocd/health.lua) in a real Lua 5.1 interpreter (Argo CD's gopher-lua is 5.1), and
Flux's kstatus (sigs.k8s.io/cli-utils, hack/tools/kstatus). The statuses are the operator's own,
from `status.desired_status` over the situations a tenant goes through."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

from edgetenant.status import desired_status
from tests.unit.test_status import NOW, observe, placement, pod

REPO = Path(__file__).resolve().parents[2]
ARGOCD = REPO / "manifests" / "argocd"


def tenant(status: dict[str, Any] | None, *, generation: int = 3, replicas: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "edgetenant.io/v1alpha1",
        "kind": "InferenceTenant",
        "metadata": {"name": "t", "namespace": "ns", "generation": generation},
        "spec": {"model": {"format": "onnx", "uri": "http://m/m.onnx"}, "replicas": replicas},
    }
    if status is not None:
        obj["status"] = status
    return obj


def _status(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return desired_status({}, observe(*args, **kwargs), NOW)


SERVING = _status(placement(), (pod("jetson-tx2-1", ready=True),))
# (situation, the tenant, kstatus's verdict, Argo CD's health)
CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("just created, the operator has not seen it", tenant(None), "InProgress", "Progressing"),
    (
        "placed, Triton still loading",
        tenant(_status(placement(), (pod("jetson-tx2-1", False),))),
        "InProgress",
        "Progressing",
    ),
    ("serving", tenant(SERVING), "Current", "Healthy"),
    ("spec edited, not yet observed", tenant(SERVING, generation=4), "InProgress", "Progressing"),
    (
        "unschedulable",
        tenant(_status(unplaced="Unschedulable: no jetson-tx2 device free")),
        "Failed",
        "Degraded",
    ),
    ("invalid spec", tenant(_status(problem="InvalidSpec: class nope does not exist")), "Failed", "Degraded"),
    (
        "the model cannot be fetched",
        tenant(_status(placement(), (pod("jetson-tx2-1", False, fetch_failed="HTTP 404 for m.onnx"),))),
        "Failed",
        "Degraded",
    ),
    (
        "moving: the new pod loads while the old one serves",
        tenant(
            desired_status(
                SERVING,
                observe(
                    placement("jetson-nano-1", "jetson-nano"),
                    (pod("jetson-tx2-1", True), pod("jetson-nano-1", False, "t-2", klass="jetson-nano")),
                ),
                NOW,
            )
        ),
        "InProgress",
        "Progressing",
    ),
    ("scaled to zero", tenant(SERVING, replicas=0), "Current", "Suspended"),
]
IDS = [case[0] for case in CASES]


def argocd_health(obj: dict[str, Any]) -> tuple[str, str]:
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    # As Argo CD does: the object, decoded from JSON into Lua tables, is the global `obj`.
    runtime.globals().obj = _to_lua(runtime, json.loads(json.dumps(obj)))
    result = runtime.execute((ARGOCD / "health.lua").read_text())
    return str(result["status"]), str(result["message"])


def _to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({k: _to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, v) for v in value])
    return value


@pytest.mark.parametrize(("situation", "obj", "kstatus", "argo"), CASES, ids=IDS)
def test_argocd_health(situation: str, obj: dict[str, Any], kstatus: str, argo: str) -> None:
    status, message = argocd_health(copy.deepcopy(obj))
    assert status == argo, f"{situation}: {status} ({message})"
    assert message


def kstatus(tool: Callable[[str], Path], objects: list[dict[str, Any]]) -> list[str]:
    result = subprocess.run(
        [str(tool("kstatus"))], input=json.dumps(objects), capture_output=True, text=True, check=True
    )
    return [r["status"] for r in json.loads(result.stdout)]


# kstatus calls an object with neither status.observedGeneration nor conditions Current, so until the
# operator's first status write (about a second), Flux would take a new tenant for ready. The fix is
# on the API side (a status the API server defaults, observedGeneration 0); this case shows it.
KNOWN_GAPS = {"just created, the operator has not seen it"}


@pytest.mark.parametrize(
    ("situation", "obj", "expected"),
    [
        pytest.param(
            s,
            o,
            k,
            marks=[pytest.mark.xfail(strict=True, reason="kstatus: no status reads as Current")]
            if s in KNOWN_GAPS
            else [],
        )
        for s, o, k, _ in CASES
    ],
    ids=IDS,
)
def test_kstatus_computes_what_flux_should_see(
    situation: str, obj: dict[str, Any], expected: str, tool: Callable[[str], Path]
) -> None:
    assert kstatus(tool, [obj]) == [expected], situation


def test_the_argocd_cm_snippet_carries_exactly_the_tested_script() -> None:
    data = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text())["data"]
    assert (
        data["resource.customizations.health.edgetenant.io_InferenceTenant"]
        == (ARGOCD / "health.lua").read_text()
    )
