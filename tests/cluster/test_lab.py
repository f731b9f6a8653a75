"""The lab itself: real scheduler, simulated edge nodes, loopback pod IPs, controller manager at work."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import subprocess
import uuid
from typing import Any

import pytest

from tests.lab import HOST_NETNS, Lab, wait_for


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
        # KWOK's nodes are 127.0.0.1; the real node is the lab's bridge (inside the lab's namespace).
        assert addresses and all(a.startswith("127.") or a == "10.42.0.1" for a in addresses)


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
    assert item["status"]["podIP"].startswith("127."), "KWOK's pod IPs are loopback addresses"


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


# --- the network rule, on the running lab (the configuration: tests/unit/test_lab_network.py) ---------

LAB_NETWORKS = [ipaddress.ip_network(n) for n in ("127.0.0.0/8", "10.42.0.0/24", "10.43.0.0/16")]


def is_lab(address: str) -> bool:
    network = ipaddress.ip_network(address, strict=False)
    return network.version == 4 and any(network.subnet_of(lab) for lab in LAB_NETWORKS)  # type: ignore[arg-type]


def ip_json(*args: str, host: bool = False) -> Any:
    """`ip -j ARGS` in the lab's namespace (this process is in it), or with host=True in the one
    this test process started in."""
    prefix = ["nsenter", f"--net=/proc/{os.getpid()}/fd/{HOST_NETNS}", "--"] if host else []
    return json.loads(
        subprocess.run([*prefix, "ip", "-j", *args], check=True, capture_output=True, text=True).stdout
    )


def lab_state(lab: Lab) -> dict[str, Any]:
    return dict(json.loads((lab.dir / "state.json").read_text()))


def node_mode(lab: Lab) -> str:
    return str(lab_state(lab).get("node_mode", "none"))


def test_the_labs_namespace_has_no_route_out(lab: Lab) -> None:
    routes = ip_json("route", "show", "table", "all")
    assert routes, "the check must see the routes it guards"
    assert [r for r in routes if r["dst"] == "default"] == []
    assert [r["dst"] for r in routes if r["dst"] not in {"default"} and not is_lab(r["dst"])] == []
    addresses = [a["local"] for link in ip_json("addr") for a in link.get("addr_info", [])]
    assert addresses and [a for a in addresses if not is_lab(a)] == []
    # A route lookup sends nothing: an address outside the lab has no route at all.
    lookup = subprocess.run(
        ["ip", "route", "get", "203.0.113.7"], capture_output=True, text=True, check=False
    )
    assert lookup.returncode != 0 and "unreachable" in lookup.stderr


def test_every_lab_process_lives_in_the_labs_namespace(lab: Lab) -> None:
    state = lab_state(lab)
    holder = state["pids"]["namespaces"]
    lab_netns = os.stat(f"/proc/{holder}/ns/net").st_ino
    for name, pid in state["pids"].items():
        with contextlib.suppress(FileNotFoundError):  # an adopted process that has ended
            assert os.stat(f"/proc/{pid}/ns/net").st_ino == lab_netns, name


def test_the_host_gets_only_the_doors_on_loopback(lab: Lab) -> None:
    links = ip_json("addr", host=True)
    assert not [link["ifname"] for link in links if link["ifname"].startswith(("cni", "veth"))]
    lab_ranges = [n for n in LAB_NETWORKS if not n.is_loopback]
    host_addresses = [ipaddress.ip_address(a["local"]) for link in links for a in link.get("addr_info", [])]
    assert not [a for a in host_addresses if any(a in n for n in lab_ranges)]
    # The doors' host sockets (the API server's and Prometheus's ports) listen on 127.0.0.1 only.
    state = lab_state(lab)
    ports = {state["ports"]["apiserver"], state["ports"]["prometheus"]}
    host_tcp = subprocess.run(
        ["nsenter", f"--net=/proc/{os.getpid()}/fd/{HOST_NETNS}", "--", "cat", "/proc/net/tcp"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()[1:]
    listening = [line.split()[1] for line in host_tcp if line.split()[3] == "0A"]  # TCP_LISTEN
    doors = [local for local in listening if int(local.split(":")[1], 16) in ports]
    assert doors and all(local.split(":")[0] == "0100007F" for local in doors)


def test_a_pod_on_the_real_node_has_no_default_route(lab: Lab) -> None:
    if node_mode(lab) != "kubelet":
        pytest.skip("the lab's edge-local is not a kubelet (hack/lab/lab up --node=kubelet)")
    pods = lab.get_json(
        "pods", "-n", "kube-system", "-l", "app.kubernetes.io/name=edgetenant-cpu-slots",
        "--field-selector=spec.nodeName=edge-local",
    )["items"]  # fmt: skip
    assert pods, "the device plugin runs on edge-local"
    table = lab.kubectl(
        "exec", "-n", "kube-system", pods[0]["metadata"]["name"], "--",
        "python", "-c", "print(open('/proc/net/route').read())",
    ).stdout.splitlines()[1:]  # fmt: skip
    destinations = [line.split()[1] for line in table if line.strip()]
    assert destinations and "00000000" not in destinations  # no default route in the pod
    assert ipaddress.ip_address(pods[0]["status"]["podIP"]) in ipaddress.ip_network("10.42.0.0/24")
