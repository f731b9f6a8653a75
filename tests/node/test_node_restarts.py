"""The real node's parts restart as a K3s node's do: the kubelet, the device plugin and the operator's
pod each go away and come back while the tenants keep serving, and the cluster converges."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.lab import InClusterOperator, Lab, wait_for
from tests.node.support import (
    allocatable,
    condition,
    containers,
    infer,
    lab_cli,
    ready,
    serving_pod,
    status_of,
    tenant,
)

MODEL = "mobilenet-v2-node"
SLOTS = "edgetenant.io/cpu-slot"
DEVICE_PLUGIN = Path(__file__).resolve().parents[2] / "manifests" / "deviceplugin"


@pytest.fixture(scope="module")
def serving(lab: Lab, namespace: str, operator: InClusterOperator) -> dict[str, Any]:
    lab.apply(tenant(namespace, MODEL, "mobilenet_v2"))
    ready(lab, namespace, MODEL)
    return serving_pod(lab, namespace, MODEL)


def test_the_device_plugins_slot_is_allocated_to_the_tenant(lab: Lab, serving: dict[str, Any]) -> None:
    limits = next(c for c in serving["spec"]["containers"] if c["name"] == "triton")["resources"]["limits"]
    assert limits[SLOTS] == "1"
    described = lab.kubectl("describe", "node", "edge-local").stdout
    allocated = described[described.index("Allocated resources:") :]
    assert any(line.split()[:2] == [SLOTS, "1"] for line in allocated.splitlines()), allocated
    # What the plugin's Allocate gave the container: its slot.
    show = "import os; print(os.environ['EDGETENANT_DEVICE_SLOTS'])"
    pod = [serving["metadata"]["name"], "-n", serving["metadata"]["namespace"], "-c", "triton"]
    assert lab.kubectl("exec", *pod, "--", "python", "-c", show).stdout.startswith("slot-")


def test_a_kubelet_restart_keeps_the_pods_serving(lab: Lab, namespace: str, serving: dict[str, Any]) -> None:
    before = containers(serving)
    lab_cli("stop", "kubelet")
    try:
        result = infer(serving, MODEL)  # no kubelet: the container runs on
        assert result.errors == 0, result.error_samples
    finally:
        lab_cli("start", "kubelet")
    wait_for(
        "edge-local Ready again",
        lambda: condition(lab.get_json("node", "edge-local")["status"], "Ready").get("status") == "True",
        timeout=120,
    )
    # The device plugin noticed (the kubelet emptied its plugin directory) and registered again.
    wait_for(f"{SLOTS} allocatable again", lambda: allocatable(lab, SLOTS) == 4, timeout=120)
    after = serving_pod(lab, namespace, MODEL)
    assert after["metadata"]["uid"] == serving["metadata"]["uid"]
    assert containers(after) == before, "the restarted kubelet adopted the running containers"
    assert infer(after, MODEL).errors == 0
    # The restarted kubelet probes readiness afresh (the pod reads NotReady until the first probe
    # passes), so the tenant's status may dip meanwhile: it must come back.
    wait_for(
        "the tenant Ready again",
        lambda: condition(status_of(lab, namespace, MODEL), "Ready").get("status") == "True",
        timeout=90,
    )


def test_a_device_plugin_restart_registers_again_and_capacity_returns(
    lab: Lab, namespace: str, serving: dict[str, Any]
) -> None:
    selector = ["-n", "kube-system", "-l", "app.kubernetes.io/name=edgetenant-cpu-slots"]
    on_node = [*selector, "--field-selector=spec.nodeName=edge-local"]

    def plugin_pods() -> list[str]:
        return [
            p["metadata"]["name"]
            for p in lab.get_json("pods", *on_node)["items"]
            if not p["metadata"].get("deletionTimestamp")
        ]

    # A restart: a new plugin process registers with the kubelet again.
    old = plugin_pods()
    assert len(old) == 1
    lab.kubectl("delete", "pod", old[0], "-n", "kube-system")
    new = wait_for("a new device plugin pod", lambda: [p for p in plugin_pods() if p not in old], timeout=60)
    wait_for(
        "the new plugin to register with the kubelet",
        lambda: (
            # check=False: no logs yet while the container is being created
            "registered edgetenant.io/cpu-slot"
            in lab.kubectl("logs", new[0], "-n", "kube-system", check=False).stdout
        ),
        timeout=60,
    )
    assert allocatable(lab, SLOTS) == 4
    # Capacity follows the plugin: without it the kubelet has no healthy slot to offer; with it back,
    # all of them (the running tenant keeps the slot it was given throughout).
    away = {"spec": {"template": {"spec": {"nodeSelector": {"edgetenant.io/device-plugin": "off"}}}}}
    lab.kubectl("patch", "daemonset", "edgetenant-cpu-slots", "-n", "kube-system", "-p", json.dumps(away))
    try:
        wait_for(
            f"{SLOTS} allocatable 0 without the plugin", lambda: allocatable(lab, SLOTS) == 0, timeout=90
        )
        assert infer(serving_pod(lab, namespace, MODEL), MODEL).errors == 0
    finally:
        lab.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=edge-lab",
            "-k",
            str(DEVICE_PLUGIN),
        )
    wait_for(f"{SLOTS} allocatable 4 with the plugin back", lambda: allocatable(lab, SLOTS) == 4, timeout=120)


def test_the_operator_pod_killed_restarts_and_converges(
    lab: Lab, namespace: str, operator: InClusterOperator, serving: dict[str, Any]
) -> None:
    pod = operator.pods()[0]
    restarts = containers(pod)["operator"][1]
    operator.crash()  # SIGKILL, as a crash: no clean shutdown, no Lease released
    # While it is down, the world changes: a second tenant arrives.
    lab.apply(tenant(namespace, "resnet18-node", "resnet18", model={"memoryHintMiB": 300}))
    wait_for(
        "the kubelet to restart the operator's container",
        lambda: containers(operator.pods()[0])["operator"][1] > restarts and operator.alive(),
        timeout=180,
    )
    ready(lab, namespace, "resnet18-node")
    assert condition(status_of(lab, namespace, MODEL), "Ready").get("status") == "True"
    assert infer(serving_pod(lab, namespace, "resnet18-node"), "resnet18-node", requests=4).errors == 0
