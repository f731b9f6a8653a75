"""The lab's two stand-in devices serve on the real kubelet node (issue #12): edge-local's CPU playing an
Intel NCS2 (OpenVINO, image tritonserver-openvino-cpu) and a Coral EdgeTPU (tflite-runtime, image
tritonserver-tflite), each a device of its own that edgetenant's device plugin advertises to the kubelet
(hack/lab/standin-deviceplugin.yaml). Both tenants of hack/demo/standins.yaml become Ready in containers
from those images, answer real inferences, report what they run on (status.observed.runsOn), and the
kubelet's device manager counts their devices as allocated.

Only on a lab whose edge-local is a kubelet (`hack/lab/lab up --node=kubelet`); skipped otherwise.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgetenant.profiling.loadgen import run_load
from tests.e2e.support import POD_RANGE, serving_pods
from tests.lab import Lab, lab_env, wait_for

REPO = Path(__file__).resolve().parents[2]
TENANTS = REPO / "hack" / "demo" / "standins.yaml"
# tenant -> its class, the class's device (a resource of its own), the Triton image, the runtime its
# shim reports
STANDINS = {
    "mobilenet-v2-ncs2-standin": (
        "ncs2-standin",
        "edgetenant.io/standin-ncs2",
        "ghcr.io/edgetenant/tritonserver-openvino-cpu:24.10",
        "openvino",
    ),
    "mobilenet-v2-edgetpu-standin": (
        "edgetpu-standin",
        "edgetenant.io/standin-edgetpu",
        "ghcr.io/edgetenant/tritonserver-tflite:24.10",
        "tflite-runtime",
    ),
}


@pytest.fixture(scope="module")
def kubelet_lab(lab: Lab) -> Lab:
    if lab.node_mode != "kubelet":
        pytest.skip(
            f"the stand-ins' images and device plugin need the kubelet node (this lab: {lab.node_mode})"
        )
    env = lab_env() or {}
    if not (Path(env.get("EDGETENANT_LAB_DIR", "/nonexistent")) / "models" / "mobilenet_v2.tflite").exists():
        pytest.skip("the zoo has no TFLite export (its converter needs Python 3.12+, hack/zoo/)")
    return lab


def status_of(lab: Lab, namespace: str, name: str) -> dict[str, Any]:
    return dict(lab.get_json("itn", name, "-n", namespace).get("status") or {})


def is_true(status: dict[str, Any], kind: str) -> bool:
    return any(c["type"] == kind and c["status"] == "True" for c in status.get("conditions", []))


def ready_status(lab: Lab, namespace: str, name: str) -> dict[str, Any] | None:
    status = status_of(lab, namespace, name)
    return status if is_true(status, "Ready") else None


def runs_on(lab: Lab, namespace: str, name: str) -> str | None:
    return (status_of(lab, namespace, name).get("observed") or {}).get("runsOn")


@pytest.fixture(scope="module")
def ready(kubelet_lab: Lab, operator: object, namespace: str) -> dict[str, dict[str, Any]]:
    tenants = [d for d in yaml.safe_load_all(TENANTS.read_text()) if d]
    assert {t["metadata"]["name"] for t in tenants} == set(STANDINS)
    for tenant in tenants:
        tenant["metadata"]["namespace"] = namespace
    kubelet_lab.apply(tenants)
    return {
        name: dict(
            wait_for(
                f"{name} Ready on edge-local",
                functools.partial(ready_status, kubelet_lab, namespace, name),
                timeout=300,
                interval=2,
            )
        )
        for name in STANDINS
    }


def test_each_standin_runs_in_its_image_on_its_own_device(
    kubelet_lab: Lab, namespace: str, ready: dict[str, dict[str, Any]]
) -> None:
    for name, (cls, resource, image, _) in STANDINS.items():
        status = ready[name]
        assert status["activePlacement"] == {
            **status["activePlacement"],
            "node": "edge-local",
            "acceleratorClass": cls,
        }
        (pod,) = serving_pods(kubelet_lab, namespace, name)
        (triton,) = [c for c in pod["spec"]["containers"] if c["name"] == "triton"]
        assert triton["image"] == image
        assert triton["resources"]["limits"][resource] == "1"
    node = kubelet_lab.get_json("node", "edge-local")
    for _, resource, _, _ in STANDINS.values():
        assert node["status"]["allocatable"][resource] == "1", "advertised by the kubelet's device manager"
    described = kubelet_lab.kubectl("describe", "node", "edge-local").stdout
    allocated = described.split("Allocated resources:", 1)[1]
    for _, resource, _, _ in STANDINS.values():
        (line,) = [row for row in allocated.splitlines() if row.split()[:1] == [resource]]
        assert line.split()[1:3] == ["1", "1"], line  # requests, limits: the one device in use


def test_standins_answer_real_inferences_and_say_what_they_run_on(
    kubelet_lab: Lab, namespace: str, ready: dict[str, dict[str, Any]]
) -> None:
    for name in STANDINS:
        (pod,) = serving_pods(kubelet_lab, namespace, name)
        ip = pod["status"]["podIP"]
        assert ipaddress.ip_address(ip) in POD_RANGE
        result = asyncio.run(run_load(f"http://{ip}:8000", name, concurrency=1, requests=10))
        assert result.errors == 0, result.error_samples
        assert result.requests == 10
    for name, (_, _, _, runtime) in STANDINS.items():
        device = wait_for(
            f"{name}: status.observed.runsOn from the shim's device metric",
            functools.partial(runs_on, kubelet_lab, namespace, name),
            timeout=90,
            interval=2,
        )
        assert device.startswith(f"CPU ({runtime} "), device
