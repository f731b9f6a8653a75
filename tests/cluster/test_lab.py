"""The lab itself: real scheduler, simulated edge nodes, loopback pod IPs, controller manager at work."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.lab import Lab, wait_for


def pod(name: str, namespace: str, resources: dict[str, str], tolerate_gpu: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [{"name": "main", "image": "busybox", "resources": {"limits": resources}}],
    }
    if tolerate_gpu:
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def test_version_is_the_real_one(lab: Lab) -> None:
    version = json.loads(lab.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == "v1.36.3"
    assert version["clientVersion"]["gitVersion"] == "v1.36.3"


def test_edge_nodes_are_ready_with_their_accelerators(lab: Lab) -> None:
    nodes = {n["metadata"]["name"]: n for n in lab.get_json("nodes")["items"]}
    assert {"jetson-tx2-1", "jetson-nano-1", "rpi4-coral-1", "rpi4-ncs2-1", "x86-nuc-1", "edge-local"} <= set(
        nodes
    )
    assert nodes["jetson-tx2-1"]["status"]["allocatable"]["nvidia.com/gpu"] == "4"
    assert nodes["rpi4-coral-1"]["status"]["allocatable"]["coral.ai/edgetpu"] == "1"
    assert nodes["rpi4-ncs2-1"]["status"]["allocatable"]["intel.com/myriad"] == "1"
    for node in nodes.values():
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", node["metadata"]["name"]
        addresses = [a["address"] for a in node["status"].get("addresses", []) if a["type"] == "InternalIP"]
        assert addresses and all(a.startswith("127.") for a in addresses)


@pytest.mark.parametrize(
    ("resource", "nodes"),
    [
        ("nvidia.com/gpu", {"jetson-tx2-1", "jetson-nano-1"}),
        ("coral.ai/edgetpu", {"rpi4-coral-1"}),
        ("intel.com/myriad", {"rpi4-ncs2-1"}),
    ],
)
def test_scheduler_places_pods_by_device_plugin_resource(
    lab: Lab, namespace: str, resource: str, nodes: set[str]
) -> None:
    name = "want-" + resource.split("/", maxsplit=1)[0].replace(".", "-")
    lab.apply(pod(name, namespace, {resource: "1"}, tolerate_gpu=True))

    def running() -> Any:
        item = lab.get_json("pod", name, "-n", namespace)
        return item if item["status"].get("phase") == "Running" else None

    item = wait_for(f"{name} Running", running)
    assert item["spec"]["nodeName"] in nodes
    assert item["status"]["podIP"].startswith("127."), "pod IPs must be loopback addresses"


def test_pod_asking_for_more_than_exists_stays_pending(lab: Lab, namespace: str) -> None:
    lab.apply(pod("too-big", namespace, {"coral.ai/edgetpu": "3"}))

    def unschedulable() -> Any:
        item = lab.get_json("pod", "too-big", "-n", namespace)
        conditions = item["status"].get("conditions", [])
        return next((c for c in conditions if c.get("reason") == "Unschedulable"), None)

    condition = wait_for("the scheduler's verdict", unschedulable)
    assert "Insufficient coral.ai/edgetpu" in condition["message"]
    assert lab.get_json("pod", "too-big", "-n", namespace)["status"]["phase"] == "Pending"


def test_owner_reference_garbage_collection(lab: Lab, namespace: str) -> None:
    owner = lab.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner", "namespace": namespace}},
        "-o",
        "json",
    )
    applied = json.loads(owner.stdout)
    uid = (applied["items"][0] if "items" in applied else applied)["metadata"]["uid"]
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
    lab.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "child", "namespace": namespace, "ownerReferences": [ref]},
        }
    )
    lab.kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_for(
        "the garbage collector to delete the child",
        lambda: lab.kubectl("get", "configmap", "child", "-n", namespace, check=False).returncode != 0,
    )


def test_deleting_a_namespace_removes_its_objects(lab: Lab) -> None:
    name = f"doomed-{uuid.uuid4().hex[:6]}"
    lab.kubectl("create", "namespace", name)
    lab.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": name}})
    lab.apply(pod("p", name, {"cpu": "100m"}))
    lab.kubectl("delete", "namespace", name, "--wait=false")
    wait_for(
        "the namespace controller to finish",
        lambda: lab.kubectl("get", "namespace", name, check=False).returncode != 0,
        timeout=120,
    )
