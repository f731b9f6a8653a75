"""The vendor device plugins' configuration (manifests/vendor-device-plugins) advertises exactly what the
shipped AcceleratorClasses request, and the Jetson classes place tenants on nodes labelled the way NVIDIA
GPU feature discovery labels them under that time-slicing configuration.

GFD's labelling rule (NVIDIA k8s-device-plugin, README "Shared Access to GPUs" and internal/lm/resource.go):
with time-slicing of a resource into N > 1 replicas and renameByDefault false, the resource keeps its
name, its count is GPUs x N, and `nvidia.com/gpu.product` gets `-SHARED` appended; renamed, the resource
is `<name>.shared` and the product is unchanged. `gfd_node` below applies that rule to the shipped config.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgetenant.placement.cli import main as plan_main

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "manifests" / "vendor-device-plugins"
CLASSES = REPO / "manifests" / "acceleratorclasses"
CHART = REPO / "charts" / "edgetenant"
JETSONS = {"jetson-tx2": "Jetson-TX2", "jetson-nano": "Jetson-Nano", "jetson-orin": "Jetson-AGX-Orin"}


def shipped_classes() -> dict[str, dict[str, Any]]:
    docs = (yaml.safe_load(p.read_text()) for p in CLASSES.glob("*.yaml") if p.name != "kustomization.yaml")
    return {d["metadata"]["name"]: d for d in docs}


def nvidia_config() -> dict[str, Any]:
    config_map = yaml.safe_load((PLUGINS / "nvidia-time-slicing.yaml").read_text())
    config: dict[str, Any] = yaml.safe_load(config_map["data"]["edgetenant"])
    return config


def gfd_node(name: str, product: str, gpus: int = 1) -> dict[str, Any]:
    """A node as the NVIDIA device plugin and GFD report it under the shipped configuration."""
    sharing = nvidia_config()["sharing"]["timeSlicing"]
    (resource,) = [r for r in sharing["resources"] if r["name"] == "nvidia.com/gpu"]
    replicas, renamed = int(resource["replicas"]), bool(sharing.get("renameByDefault", False))
    shared = replicas > 1
    advertised = f"{resource['name']}.shared" if shared and renamed else resource["name"]
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/arch": "arm64",
        "nvidia.com/gpu.product": product + ("-SHARED" if shared and not renamed else ""),
        "nvidia.com/gpu.replicas": str(replicas),
        "nvidia.com/gpu.sharing-strategy": "time-slicing" if shared else "none",
        "nvidia.com/gpu.count": str(gpus),
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]},
        "status": {
            "allocatable": {"cpu": "4", "memory": "8Gi", advertised: str(gpus * replicas)},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def tenant(klass: str) -> dict[str, Any]:
    return {
        "apiVersion": "edgetenant.io/v1alpha1",
        "kind": "InferenceTenant",
        "metadata": {"name": f"on-{klass}", "namespace": "shop"},
        "spec": {
            "model": {"format": "onnx", "uri": "http://models/m.onnx", "memoryHintMiB": 300},
            "acceleratorClasses": [klass],
        },
    }


def placed(
    tmp_path: Path, classes: list[dict[str, Any]], klass: str, capsys: pytest.CaptureFixture[str]
) -> str:
    """The node `edgetenant plan` puts a tenant of `klass` on ('' when unplaced)."""
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(yaml.safe_dump_all([gfd_node("board-1", JETSONS[klass]), *classes, tenant(klass)]))
    capsys.readouterr()
    plan_main(["-f", str(cluster), "-o", "yaml", "--time-limit", "1"])
    plan = yaml.safe_load(capsys.readouterr().out)
    return next((str(p["node"]) for p in plan["placements"]), "")


def test_the_time_slicing_config_gives_every_nvidia_class_its_slots() -> None:
    config = nvidia_config()
    sharing = config["sharing"]["timeSlicing"]
    assert sharing["renameByDefault"] is False  # renamed, the resource would be nvidia.com/gpu.shared
    replicas = {r["name"]: r["replicas"] for r in sharing["resources"]}
    for name, klass in shipped_classes().items():
        if klass["spec"].get("resourceName") == "nvidia.com/gpu":
            assert klass["spec"]["sharing"] == {"mode": "TimeSliced", "slots": replicas["nvidia.com/gpu"]}, (
                name
            )


def test_the_generic_device_plugin_advertises_the_coral_and_ncs2_resources() -> None:
    daemonset = yaml.safe_load((PLUGINS / "generic-device-plugin.yaml").read_text())
    advertised = set()
    for container in daemonset["spec"]["template"]["spec"]["containers"]:
        args = container["args"]
        (domain,) = [a.split("=", 1)[1] for a in args if a.startswith("--domain=")]
        devices = [yaml.safe_load(args[i + 1]) for i, a in enumerate(args) if a == "--device"]
        advertised |= {f"{domain}/{device['name']}" for device in devices}
    classes = shipped_classes()
    assert {
        classes["coral-edgetpu"]["spec"]["resourceName"],
        classes["intel-ncs2"]["spec"]["resourceName"],
    } <= advertised


@pytest.mark.parametrize("klass", sorted(JETSONS))
def test_a_jetson_labelled_by_gfd_under_time_slicing_gets_its_tenants(
    klass: str, tool: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The classes as shipped select the product as one labels it by hand: GFD's -SHARED does not match.
    assert placed(tmp_path, list(shipped_classes().values()), klass, capsys) == ""
    # The chart with productLabelSuffix=-SHARED (as the gpu-feature-discovery component): placed there.
    result = subprocess.run(
        [
            str(tool("helm")),
            "template",
            "et",
            str(CHART),
            "--set",
            "acceleratorClasses.productLabelSuffix=-SHARED",
            "--show-only",
            "templates/acceleratorclasses.yaml",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rendered = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert placed(tmp_path, rendered, klass, capsys) == "board-1"
