"""Helpers of the e2e tests (plain functions), on the lab's real node: a kubelet runs Triton in a
container, in the pod's own network namespace and cgroup."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

from tests.lab import Lab

# Where the kubelet's CNI puts pods (hack/lab/netns.py).
POD_RANGE = ipaddress.ip_network("10.42.0.0/24")


def serving_pods(lab: Lab, namespace: str, tenant: str) -> list[dict[str, Any]]:
    """The tenant's pods that have an IP and are not going away."""
    pods = lab.get_json("pods", "-n", namespace, "-l", f"edgetenant.io/tenant={tenant}")["items"]
    return [p for p in pods if p["status"].get("podIP") and not p["metadata"].get("deletionTimestamp")]


def triton_pids(lab: Lab, namespace: str, pod_name: str) -> list[int]:
    """PIDs of the pod's Triton container (the pod is read again: a restarted container has a new ID);
    none when the pod is gone or its container has not started."""
    found = lab.kubectl("get", "pod", pod_name, "-n", namespace, "-o", "json", check=False)
    if found.returncode != 0:
        return []
    try:
        return lab.container_pids(json.loads(found.stdout), "triton")
    except StopIteration:  # no container status yet
        return []


def alive(pids: list[int]) -> bool:
    return any(Path(f"/proc/{pid}").exists() for pid in pids)
