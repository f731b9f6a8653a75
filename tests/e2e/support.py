"""Helpers of the e2e tests (plain functions). They work on both lab nodes: the process node (Triton as
a local process bound to the pod's loopback IP) and the real kubelet (Triton in a container, in the
pod's own network namespace, in the pod's cgroup)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from tests.lab import Lab

# Where each lab node puts its pods (hack/lab/localnode.py; hack/lab/netns.py for the kubelet's CNI).
POD_RANGES = {
    "process": ipaddress.ip_network("127.64.0.0/16"),
    "kubelet": ipaddress.ip_network("10.42.0.0/24"),
}


def serving_pods(lab: Lab, namespace: str, tenant: str) -> list[dict[str, Any]]:
    """The tenant's pods that have an IP and are not going away."""
    pods = lab.get_json("pods", "-n", namespace, "-l", f"edgetenant.io/tenant={tenant}")["items"]
    return [p for p in pods if p["status"].get("podIP") and not p["metadata"].get("deletionTimestamp")]


def triton_pids(lab: Lab, namespace: str, pod_name: str) -> list[int]:
    """PIDs of the pod's Triton: its container's processes on the kubelet node (the pod is read again,
    as a restarted container has a new ID), the tritonserver process bound to its IP on the process
    node. None when the pod is gone."""
    found = lab.kubectl("get", "pod", pod_name, "-n", namespace, "-o", "json", check=False)
    if found.returncode != 0:
        return []
    pod = lab.get_json("pod", pod_name, "-n", namespace)
    if lab.node_mode == "kubelet":
        try:
            return lab.container_pids(pod, "triton")
        except StopIteration:  # no container status yet
            return []
    ip = (pod.get("status") or {}).get("podIP") or ""
    return _processes_bound_to(ip) if ip else []


def alive(pids: list[int]) -> bool:
    return any(Path(f"/proc/{pid}").exists() for pid in pids)


def _processes_bound_to(pod_ip: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"tritonserver") and any(pod_ip.encode() in a for a in argv):
            pids.append(int(entry.name))
    return pids
